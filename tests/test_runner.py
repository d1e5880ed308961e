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
    assert row["SPC (model; SAM family only)"] == pytest.approx(records["model_seconds"].mean())
    assert row["SPC (cold)"] == pytest.approx(records["model_seconds"].mean())  # no encoder
    # RITM's: wall time over the dataset / clicks, each sample stopped at IoU 0.90.
    stops = [noc(g["iou"].to_numpy(), 0.90, len(g)) for _, g in records.groupby("sample")]
    wall = sum(
        g["load_seconds"].iloc[0] + g["set_image_seconds"].iloc[0] + g["click_seconds"].iloc[:stop].sum()
        for stop, (_, g) in zip(stops, records.groupby("sample"))
    )
    assert row["SPC (RITM; the study's)"] == pytest.approx(wall / sum(stops))

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


def test_sam_methods_are_named_by_architecture_scenario_and_digest(tmp_path):
    from histoclick.evaluation import SamMethod, method_name
    from histoclick.models import load_model, save_state_dict, sha256_of
    from histoclick.models.finetuned import base_reference, save_checkpoint
    from histoclick.training.scenarios import apply_scenario

    assert make_method("sam:vit_tiny", device="cpu").name == "sam:vit_tiny@random-seed-0"
    tiny = load_model("vit_tiny", device="cpu")
    plain = save_state_dict(tiny, tmp_path / "sam_tiny.pth")
    method = make_method(f"sam:{plain}", device="cpu")
    assert method.name == f"sam:vit_tiny@{sha256_of(plain)[:8]}"
    assert method.weights == sha256_of(plain)

    base = base_reference(tiny)
    trainable = apply_scenario(tiny, "md")
    tuned = save_checkpoint(
        tmp_path / "runs" / "md" / "best.pt", tiny, base=base, scenario="md",
        trainable=trainable, config={}, epoch=1,
    )
    digest = sha256_of(tuned)
    method = make_method(f"sam:{tuned}", device="cpu")
    assert method.name == f"sam:vit_tiny+md@{digest[:8]}" and method.weights == digest
    # One function names a model wherever it appears (demo, evaluate, finetune, notebooks).
    loaded = load_model(tuned, device="cpu")
    assert SamMethod(loaded).name == method_name(loaded) == method_name(loaded, "md") == method.name


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
    assert "NoC@90" in printed and "grabcut" in printed and "SPC (RITM; the study's)" in printed
    assert "the study's definition" in printed
    for name in ("records.csv", "summary.csv", "miou.png", "boundary_f.png", "noc90.png"):
        assert (out / name).is_file()
    assert set(load_records(out / "records.csv")["method"]) == {"region_growing", "grabcut"}


def test_cli_evaluate_needs_a_dataset(tmp_path, capsys):
    assert main(["evaluate", "--out", str(tmp_path / "x")]) == 2
    assert "--data DIR" in capsys.readouterr().err


def comparable(records):
    """The protocol's results, without timings, in (sample, click) order."""
    columns = ["sample", "sample_sha256", "click", "y", "x", "positive", "iou", "n_clicks"]
    return records[columns].sort_values(["sample", "click"]).reset_index(drop=True)


def test_cut_records_are_repaired_on_resume_at_any_byte_offset(sample_dir, tmp_path, capsys):
    dataset = FolderDataset(sample_dir, name="tiles")
    full = tmp_path / "full"
    run(dataset, full)
    content = (full / "records.csv").read_bytes()
    expected = comparable(load_records(full / "records.csv"))
    header_end = content.index(b"\n") + 1
    last_line = content.rindex(b"\n", 0, len(content) - 1) + 1
    offsets = [5, header_end, header_end + 7, len(content) // 2, last_line, last_line + 9,
               len(content) - 2, len(content) - 1]
    for offset in offsets:
        out = tmp_path / f"cut{offset}"
        out.mkdir()
        (out / "settings.json").write_bytes((full / "settings.json").read_bytes())
        (out / "records.csv").write_bytes(content[:offset])
        run(dataset, out)
        if not content[:offset].endswith(b"\n"):
            assert "last line was cut short" in capsys.readouterr().out
        resumed = load_records(out / "records.csv")
        pd.testing.assert_frame_equal(comparable(resumed), expected)
        assert (out / "records.csv").read_bytes().endswith(b"\n")


def test_resume_recomputes_a_sample_whose_pixels_changed(sample_dir, tmp_path, capsys):
    dataset = FolderDataset(sample_dir, name="tiles")
    out = tmp_path / "out"
    run(dataset, out)
    before = load_records(out / "records.csv")
    mask_path = sample_dir / "masks" / "00001.png"
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    mask[:20, :20] = 255 - mask[:20, :20]
    cv2.imwrite(str(mask_path), mask)
    capsys.readouterr()
    run(dataset, out)
    printed = capsys.readouterr().out
    assert "sample '00001' changed since region_growing was run on it" in printed
    after = load_records(out / "records.csv")
    assert len(after) == len(before)
    changed = after[after["sample"] == "00001"]
    assert (changed["sample_sha256"] != before.loc[before["sample"] == "00001", "sample_sha256"].iloc[0]).all()
    unchanged = after["sample"] != "00001"
    pd.testing.assert_frame_equal(comparable(after[unchanged]), comparable(before[before["sample"] != "00001"]))


def test_resume_refuses_a_method_name_recorded_with_other_weights(sample_dir, tmp_path):
    dataset = FolderDataset(sample_dir, name="tiles")
    first, second = RegionGrowing(), RegionGrowing()
    first.weights, second.weights = "a" * 64, "b" * 64
    evaluate(first, dataset, tmp_path / "out", max_clicks=2, limit=1, verbose=False)
    assert set(load_records(tmp_path / "out" / "records.csv")["weights"]) == {"a" * 64}
    with pytest.raises(ValueError, match="made with weights 'a{64}'.*has weights 'b{64}'"):
        evaluate(second, dataset, tmp_path / "out", max_clicks=2, limit=1, verbose=False)


@pytest.mark.parametrize(
    "settings, problem",
    [
        ({"max_clicks": 0}, "max_clicks must be a whole number of at least 1, got 0"),
        ({"target_iou": float("nan")}, "target_iou must be a number in \\(0, 1\\], got nan"),
        ({"target_iou": 1.5}, "target_iou must be a number in"),
        ({"limit": -1}, "limit must be a whole number of at least 1, got -1"),
        ({"pred_thr": float("nan")}, "pred_thr must be a number in \\(0, 1\\), got nan"),
    ],
)
def test_settings_are_validated_before_anything_is_written(sample_dir, tmp_path, settings, problem):
    dataset = FolderDataset(sample_dir, name="tiles")
    with pytest.raises(ValueError, match=problem):
        evaluate(RegionGrowing(), dataset, tmp_path / "out", verbose=False, **settings)
    assert not (tmp_path / "out").exists()


def test_cli_rejects_bad_settings_and_a_file_as_output(sample_dir, tmp_path, capsys):
    for option, value in (("--max-clicks", "0"), ("--target-iou", "nan"), ("--limit", "-1")):
        code = main(["evaluate", "--data", str(sample_dir), option, value, "--out", str(tmp_path / "o")])
        assert code == 2
        assert option.lstrip("-").replace("-", "_") in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine")
    assert main(["evaluate", "--data", str(sample_dir), "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert f"the output folder {a_file} is a file" in err and "Traceback" not in err
    assert a_file.read_text() == "mine"


def test_formula_like_sample_ids_are_neutralised_in_csv_outputs(sample_dir, tmp_path):
    for index, prefix in enumerate("=+-@"):
        for folder, suffix in (("images", ".png"), ("masks", ".png")):
            (sample_dir / folder / f"0000{index}{suffix}").rename(
                sample_dir / folder / f"{prefix}cmd{index}{suffix}"
            )
    dataset = FolderDataset(sample_dir, name="=tiles")
    out = tmp_path / "out"
    run(dataset, out)
    text = (out / "records.csv").read_text()
    assert all(not line.startswith(("=", "+", "-", "@")) for line in text.splitlines())
    for index, prefix in enumerate("=+-@"):
        assert f",'{prefix}cmd{index}," in text
    records = load_records(out / "records.csv")
    assert set(records["dataset"]) == {"'=tiles"}
    assert (out / "summary.csv").read_text().splitlines()[1].startswith("'=tiles")
    run(dataset, out)  # the neutralised ids still key the resume: nothing is run again
    assert (out / "records.csv").read_text() == text
