"""evaluate(): records on disk, resume, empty-gt skipping, summary table, plot and the CLI."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pandas as pd
import pytest

from histoclick.cli import main
from histoclick.datasets.folders import FolderDataset
from histoclick.datasets.synthetic import write_sample
from histoclick.evaluation import (
    RECORD_COLUMNS,
    SUMMARY_COLUMNS,
    RegionGrowing,
    Subset,
    evaluate,
    load_records,
    make_method,
    noc,
)

MAX_CLICKS = 3


@pytest.fixture
def sample_dir(tmp_path):
    """4 synthetic 128x128 tiles plus one tile whose mask is empty (id 00004)."""
    root = write_sample(tmp_path / "tiles", n=5, size=128, seed=0)
    cv2.imwrite(str(root / "masks" / "00004.png"), np.zeros((128, 128), np.uint8))
    return root


def run(dataset, out, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(RegionGrowing(), dataset, out, max_clicks=MAX_CLICKS, verbose=False, **kwargs)


def test_evaluate_writes_records_summary_and_plot(sample_dir, tmp_path):
    dataset = FolderDataset(sample_dir, name="tiles")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="00004.*empty ground truth"):
        summary = evaluate(RegionGrowing(), dataset, out, max_clicks=MAX_CLICKS, verbose=False)
    assert dataset.skipped == 1 and dataset.skipped_ids == ["00004"]

    records = load_records(out / "records.csv")
    assert list(records.columns) == RECORD_COLUMNS
    assert sorted(records["sample"].unique()) == ["00000", "00001", "00002", "00003"]
    assert len(records) == 4 * MAX_CLICKS
    assert records["iou"].dtype == np.float32
    assert (records.groupby("sample")["click"].apply(list) == [[1, 2, 3]] * 4).all()

    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(summary.index) == [("tiles", "region_growing")]
    row = summary.loc[("tiles", "region_growing")]
    nocs = [noc(g["iou"].to_numpy(), 0.85, MAX_CLICKS) for _, g in records.groupby("sample")]
    assert row["NoC@85"] == pytest.approx(np.mean(nocs))
    assert row["NoF@85"] == sum(n == MAX_CLICKS for n in nocs)
    assert row["SPC (model)"] == pytest.approx(records["model_seconds"].mean())
    assert row["SPC (wall)"] >= row["SPC (model)"]

    on_disk = pd.read_csv(out / "summary.csv", index_col=[0, 1])
    assert list(on_disk.columns) == SUMMARY_COLUMNS
    assert (out / "miou.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = pd.read_csv(out / "miou.csv", index_col=0, header=[0, 1])
    assert list(curves.index) == [1, 2, 3]
    assert json.loads((out / "settings.json").read_text())["max_clicks"] == MAX_CLICKS


def test_rerun_adds_nothing_and_partial_records_are_completed(sample_dir, tmp_path):
    dataset = FolderDataset(sample_dir, name="tiles")
    out = tmp_path / "out"
    run(dataset, out)
    path = out / "records.csv"
    complete = path.read_text()

    run(dataset, out)
    assert path.read_text() == complete  # every sample was done: nothing appended

    # Simulate a crash: the last sample lost its final row, and a half-written line follows.
    lines = complete.splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + "tiles,region_growing,00003,3,1")
    run(dataset, out)
    records = load_records(path)
    assert len(records) == 4 * MAX_CLICKS
    assert records.groupby("sample")["click"].apply(list).tolist() == [[1, 2, 3]] * 4
    before = load_records(_write(tmp_path / "before.csv", complete))
    pd.testing.assert_frame_equal(
        records[["sample", "click", "y", "x", "positive", "iou"]],
        before[["sample", "click", "y", "x", "positive", "iou"]],
    )


def _write(path, text):
    path.write_text(text)
    return path


def test_limit_and_settings_are_respected(sample_dir, tmp_path):
    dataset = FolderDataset(sample_dir, name="tiles")
    run(dataset, tmp_path / "out", limit=2)
    assert len(load_records(tmp_path / "out" / "records.csv")) == 2 * MAX_CLICKS
    with pytest.raises(ValueError, match="max_clicks"):
        evaluate(RegionGrowing(), dataset, tmp_path / "out", max_clicks=5, verbose=False)


def test_make_method_names():
    assert make_method("region_growing").name == "region_growing"
    assert make_method("grabcut").name == "grabcut"
    with pytest.raises(ValueError, match="sam:vit_b"):
        make_method("watershed")


def test_sam_methods_from_checkpoints_are_named_by_file_or_run(tmp_path):
    from histoclick.models import load_model, save_state_dict

    tiny = load_model("vit_tiny", device="cpu")
    for relative in ("sam_tiny.pth", "runs/md/best.pt", "runs/enhanced/best.pt"):
        save_state_dict(tiny, tmp_path / relative)
    names = [make_method(f"sam:{tmp_path / r}", device="cpu").name
             for r in ("sam_tiny.pth", "runs/md/best.pt", "runs/enhanced/best.pt")]
    assert names == ["sam:sam_tiny", "sam:md/best", "sam:enhanced/best"]
    assert make_method("sam:vit_tiny", device="cpu").name == "sam:vit_tiny"


def test_subset_keeps_the_given_ids_under_its_own_name(sample_dir):
    folder = FolderDataset(sample_dir)
    held_out = Subset(folder, folder.sample_ids[1:2], name="held out")
    assert held_out.name == "held out" and held_out.sample_ids == folder.sample_ids[1:2]
    (sample,) = list(held_out)
    assert sample.id == folder.sample_ids[1]
    np.testing.assert_array_equal(sample.gt, folder.load(folder.sample_ids[1]).gt)
    with pytest.raises(ValueError, match="no samples"):
        Subset(folder, ["nope"])


def test_cli_evaluate_writes_everything(sample_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main([
            "evaluate", "--data", str(sample_dir), "--methods", "region_growing", "grabcut",
            "--max-clicks", "2", "--limit", "2", "--out", str(out),
        ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "NoC@90" in printed and "grabcut" in printed and "SPC (wall)" in printed
    for name in ("records.csv", "summary.csv", "miou.png"):
        assert (out / name).is_file()
    assert set(load_records(out / "records.csv")["method"]) == {"region_growing", "grabcut"}


def test_cli_evaluate_needs_a_dataset(tmp_path, capsys):
    assert main(["evaluate", "--out", str(tmp_path / "x")]) == 2
    assert "--data DIR" in capsys.readouterr().err
