"""The ``histoclick`` command: help for every sub-command, the demo end to end, checkpoints."""

import subprocess
import sys

import pytest
from PIL import Image

from histoclick.cli import COMMANDS, main
from histoclick.models import load_model, save_state_dict
from histoclick.qupath import read_geojson


def test_console_help_lists_every_command():
    result = subprocess.run(
        [sys.executable, "-m", "histoclick", "--help"], capture_output=True, text=True, check=True
    )
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: histoclick " + command in capsys.readouterr().out


def test_demo_without_sam_checkpoint_still_completes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HISTOCLICK_CHECKPOINT_DIR", str(tmp_path / "no-checkpoints"))
    missing = tmp_path / "sam_vit_b_01ec64.pth"
    code = main(["demo", "--out", str(tmp_path / "out"), "--model", str(missing),
                 "--samples", "2", "--max-clicks", "3", "--overlays", "1"])
    assert code == 0
    out = capsys.readouterr().out
    (skip_line,) = [line for line in out.splitlines() if line.startswith("SAM skipped")]
    assert str(missing) in skip_line
    assert "NoC@85" in out and "region_growing" in out and "grabcut" in out
    assert Image.open(tmp_path / "out" / "overlay.png").size[0] > 300
    # One GeoJSON per image (the overlay's first sample), each feature with its own id.
    (geojson,) = (tmp_path / "out" / "geojson").glob("*.geojson")
    assert geojson.name == "00000.geojson"
    annotations = read_geojson(geojson)
    assert set(annotations["classification"]) == {"Tumor"}
    assert annotations["id"].notna().all() and annotations["id"].is_unique
    assert all(name.startswith("00000 ") for name in annotations["name"])
    assert annotations["measurements"].map(lambda m: m["histoclick clicks"]).eq(3).all()
    assert (tmp_path / "out" / "evaluation" / "records.csv").exists()
    assert (tmp_path / "out" / "evaluation" / "miou.png").exists()


def test_demo_runs_sam_from_a_checkpoint_on_given_data(tmp_path, synthetic_sample, capsys):
    checkpoint = save_state_dict(load_model("vit_tiny", device="cpu"), tmp_path / "tiny.pth")
    code = main(["demo", "--data", str(synthetic_sample), "--out", str(tmp_path / "out"),
                 "--model", str(checkpoint), "--device", "cpu", "--samples", "1",
                 "--max-clicks", "2", "--overlays", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "SAM skipped" not in out and "sam:vit_tiny" in out


def test_bad_data_folder_is_one_clear_error(tmp_path, capsys):
    assert main(["demo", "--data", str(tmp_path), "--model", "none", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "images/ folder and a masks/ folder" in err and "Traceback" not in err


def test_checkpoints_lists_the_official_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HISTOCLICK_CHECKPOINT_DIR", str(tmp_path))
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    assert main(["checkpoints"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("vit_b" in line and "damaged" in line for line in lines)  # 1 byte: not the real file
    assert any("vit_h" in line and "missing" in line and "dl.fbaipublicfiles.com" in line for line in lines)


def test_checkpoints_download_takes_exactly_the_official_variants(capsys):
    from histoclick.cli import build_parser
    from histoclick.models import OFFICIAL_CHECKPOINTS

    parser = build_parser()
    for variant in OFFICIAL_CHECKPOINTS:  # parsed only: nothing is downloaded
        assert parser.parse_args(["checkpoints", "--download", variant]).download == [variant]
    with pytest.raises(SystemExit):
        parser.parse_args(["checkpoints", "--download", "vit_x"])
    assert "invalid choice: 'vit_x'" in capsys.readouterr().err
