"""``histoclick evaluate --adapt``: the adaptive evaluation protocol end to end (vit_tiny, CPU)."""

from __future__ import annotations

import pandas as pd
import pytest

from histoclick import load_model
from histoclick.cli import main
from histoclick.datasets.synthetic import write_sample


@pytest.mark.slow
def test_evaluate_adapt_compares_the_adaptive_run_with_the_static_one(tmp_path, capsys):
    data = write_sample(tmp_path / "data", n=2, size=64)
    out = tmp_path / "run"
    argv = [
        "evaluate", "--data", str(data), "--methods", "sam:vit_tiny", "--adapt", "md", "--adapt-seed", "1",
        "--adapt-steps", "1", "--max-clicks", "1", "--device", "cpu", "--out", str(out),
        "--cache-dir", str(tmp_path / "cache"),
    ]
    assert main(argv) == 0
    samples = pd.read_csv(out / "adaptive_samples.csv", dtype={"sample_id": str})
    assert list(samples["sample_id"]) == ["00000", "00001"]  # the dataset's fixed order
    first = samples.iloc[0]
    # Before any accept both runs use the same base decoder, so the first sample is the same.
    assert [first[f"static NoC@{t}"] for t in (80, 85, 90)] == [first[f"adaptive NoC@{t}"] for t in (80, 85, 90)]
    assert set(samples["accepted"]) <= {"gt", "prediction", "none"}
    assert samples["adopted"].notna().all()  # a refit ran after each accepted sample
    summary = pd.read_csv(out / "adaptive_summary.csv", index_col=0)
    assert list(summary.index) == ["static", "adaptive"]
    assert summary.loc["static", "method"] == "sam:vit_tiny@random-seed-0"
    assert summary.loc["adaptive", "method"] == "sam:vit_tiny@random-seed-0+adapt-md"
    assert {"NoC@80", "NoC@85", "NoC@90", "NoC@90 first 10", "NoC@90 last 10"} <= set(summary.columns)
    assert (out / "noc_sequence.png").read_bytes().startswith(b"\x89PNG")
    adapted = load_model(out / "adapted-decoder.pt", device="cpu")  # a checkpoint load_model takes
    assert adapted.name == "vit_tiny" and adapted.encoder_identity == load_model("vit_tiny", device="cpu").identity
    capsys.readouterr()
    assert main([*argv[:4], "sam:vit_tiny", "grabcut", *argv[5:]]) == 2
    assert "--adapt adapts one SAM model" in capsys.readouterr().err
