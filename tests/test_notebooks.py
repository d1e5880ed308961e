"""The notebooks in notebooks/ run top to bottom (nbclient), so they never rot.

Parameters are overridden the way papermill does it: a cell with the new values is inserted right
after the cell tagged "parameters". Each notebook runs in its own tmp_path, so relative output
paths land there.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from histoclick.qupath import read_geojson

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
# The one line notebooks print for vit_tiny (histoclick.datasets.real_data.describe_weights).
RANDOM_WEIGHTS = "weights: RANDOM (vit_tiny, random weights (seed 0)): its masks and numbers say nothing"


def run_notebook(
    name: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, **parameters
) -> nbformat.NotebookNode:
    """Execute ``notebooks/name`` in ``workdir`` with ``parameters`` injected; return it executed."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [
        i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])
    ]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    if parameters:
        source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
        injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
        notebook.cells.insert(tagged[0] + 1, injected)
    # The kernel runs in workdir: make this checkout importable there even when not installed.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    nbformat.write(notebook, workdir / name)  # kept for inspection when a later assertion fails
    return notebook


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_parameterised_and_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    tags = [cell.metadata.get("tags", []) for cell in notebook.cells]
    assert sum("parameters" in t for t in tags) == 1, (
        "one cell tagged 'parameters' holds the data/model defaults"
    )
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


@pytest.mark.slow
def test_03_interactive_session_with_defaults(tmp_path, monkeypatch):
    notebook = run_notebook("03_interactive_qupath_session.ipynb", tmp_path, monkeypatch, data="synthetic")
    printed = _printed(notebook)
    assert "data: a synthetic slide (2048 x 1536 pixels at 40x) (data = 'synthetic')" in printed
    assert sum(line.startswith(RANDOM_WEIGHTS) for line in printed) == 1
    saved = read_geojson(tmp_path / "histoclick_objects.geojson")
    assert len(saved) == 1 and saved["classification"].iloc[0] == "Tumor"
    assert saved["measurements"].iloc[0]["histoclick clicks"] == 2.0
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    assert any("image/png" in output.get("data", {}) for output in outputs)  # the read-back figure


@pytest.mark.slow
def test_03_finds_the_real_slide_by_default(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("HISTOCLICK_DATA", str(shared_data))  # where data = "auto" looks first
    notebook = run_notebook(
        "03_interactive_qupath_session.ipynb",
        tmp_path,
        monkeypatch,
        object_class="Stroma",
        geojson_path="real.geojson",
        scripted_clicks=[(200, 300, True), (400, 100, True), (50, 450, False)],
    )
    slide = shared_data / "slides" / "cmu_small_region.svs"
    assert f"data: CMU-1-Small-Region (real Aperio slide, CC0) from {slide}" in _printed(notebook)
    saved = read_geojson(tmp_path / "real.geojson")
    assert len(saved) == 1 and saved["classification"].iloc[0] == "Stroma"
    minx, miny, maxx, maxy = saved.geometry.iloc[0].bounds
    assert 0 <= minx < maxx <= 2220 and 0 <= miny < maxy <= 2967  # inside the slide, level-0 pixels


def _outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


def _images(notebook: nbformat.NotebookNode) -> int:
    """How many PNG images the executed notebook displayed."""
    return sum("image/png" in output.get("data", {}) for output in _outputs(notebook))


def _printed(notebook: nbformat.NotebookNode) -> list[str]:
    """The lines the executed notebook printed (stdout)."""
    return [
        line
        for output in _outputs(notebook)
        if output.get("output_type") == "stream" and output.get("name") == "stdout"
        for line in output["text"].splitlines()
    ]


def _tables(notebook: nbformat.NotebookNode, caption: str) -> list[str]:
    """The HTML of the tables the executed notebook displayed with ``caption``."""
    pages = [output["data"]["text/html"] for output in _outputs(notebook) if "text/html" in output.get("data", {})]
    return [page for page in pages if f"<caption>{caption}" in page]


@pytest.mark.slow
def test_01_zero_shot_comparison_with_defaults(tmp_path, monkeypatch):
    notebook = run_notebook("01_zero_shot_comparison.ipynb", tmp_path, monkeypatch, data="synthetic")
    printed = _printed(notebook)
    assert "data: synthetic H&E-like tiles (data = 'synthetic')" in printed
    assert sum(line.startswith(RANDOM_WEIGHTS) for line in printed) == 1
    summary = pd.read_csv(tmp_path / "zero_shot_results" / "summary.csv", index_col=[0, 1])
    assert list(summary.index) == [
        ("synthetic", "sam:vit_tiny@random-seed-0"), ("synthetic", "region_growing"), ("synthetic", "grabcut")
    ]
    assert summary["NoC@90"].between(1, 5).all()  # max_clicks = 5 by default
    records = pd.read_csv(tmp_path / "zero_shot_results" / "records.csv")
    assert records.groupby("method")["sample"].nunique().eq(3).all()  # limit = 3
    (study,) = _tables(notebook, "The study's table: 5 clicks per sample (random SAM weights")
    headers = ["NoC@80", "NoC@85", "NoC@90", "SPC (RITM; the study's)", *summary.index.levels[1]]
    assert all(f">{header}</th>" in study for header in headers)  # the study's columns, a row per method
    assert "NoF@85" not in study  # the other metrics are in the next table
    assert _images(notebook) == 2  # the mIoU curves and the overlay figure


@pytest.mark.slow
def test_01_finds_camelyon16_mini_by_default(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("HISTOCLICK_DATA", str(shared_data))  # where data = "auto" looks first
    notebook = run_notebook(
        "01_zero_shot_comparison.ipynb", tmp_path, monkeypatch,
        baselines=["region_growing"], max_clicks=2, limit=2, n_overlays=1, out_dir="real",
    )
    tiles = shared_data / "camelyon16_mini"
    assert f"data: camelyon16_mini (real CAMELYON16 tiles, CC0) from {tiles}" in _printed(notebook)
    summary = pd.read_csv(tmp_path / "real" / "summary.csv", index_col=[0, 1])
    assert set(summary.index.get_level_values("dataset")) == {"camelyon16_mini"}
    assert len(summary) == 2


@pytest.mark.slow
def test_02_finetuning_scenarios_with_defaults_in_one_epoch(tmp_path, monkeypatch):
    from histoclick import load_model

    # One epoch instead of the notebook's two: the same cells, half of CI's longest test.
    notebook = run_notebook("02_finetuning_scenarios.ipynb", tmp_path, monkeypatch, epochs=1, data="synthetic")
    printed = _printed(notebook)
    assert "second dataset: synthetic 384-pixel tiles (data = 'synthetic')" in printed
    assert sum(line.startswith(RANDOM_WEIGHTS) for line in printed) == 1
    (run_dir,) = (tmp_path / "finetuning_runs").iterdir()
    for scenario in ("md", "ie_md", "whole", "enhanced"):
        load_model(run_dir / scenario / "best.pt", device="cpu")  # every checkpoint loads back
    summary = pd.read_csv(run_dir / "evaluation" / "summary.csv", index_col=[0, 1])
    methods = ["zero-shot", "SAM^MD", "SAM^IE_MD", "SAM^Whole", "Ours (enhanced)"]
    assert list(summary.index) == [
        (dataset, method)
        for dataset in ("synthetic (test)", "synthetic-384px")
        for method in methods
    ]
    assert _images(notebook) == 2  # the cost bar chart and the mIoU curves


@pytest.mark.slow
def test_02_generalises_to_camelyon16_mini_by_default(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("HISTOCLICK_DATA", str(shared_data))  # where data = "auto" looks first
    notebook = run_notebook(
        "02_finetuning_scenarios.ipynb",
        tmp_path,
        monkeypatch,
        scenarios=["md", "enhanced"],
        eval_limit=1,
        epochs=1,
    )
    tiles = shared_data / "camelyon16_mini"
    assert f"second dataset: camelyon16_mini (real CAMELYON16 tiles, CC0) from {tiles}" in _printed(notebook)
    (run_dir,) = (tmp_path / "finetuning_runs").iterdir()
    summary = pd.read_csv(run_dir / "evaluation" / "summary.csv", index_col=[0, 1])
    assert set(summary.index) == {
        (dataset, method)
        for dataset in ("synthetic (test)", "camelyon16_mini")
        for method in ("zero-shot", "SAM^MD", "Ours (enhanced)")
    }


@pytest.mark.slow
def test_04_online_adaptation_static_vs_adaptive(tmp_path, monkeypatch):
    from histoclick import load_model
    from histoclick.evaluation.naming import scenario_of

    notebook = run_notebook("04_online_adaptation.ipynb", tmp_path, monkeypatch, data="synthetic")
    run = tmp_path / "adaptive_run"
    assert scenario_of(load_model(run / "base" / "best.pt", device="cpu")) == "md"  # domain A's base
    summary = pd.read_csv(run / "adaptive_summary.csv", index_col=0)
    assert list(summary.index) == ["static", "adaptive"]
    assert "random-seed" not in summary.loc["static", "method"]  # the trained base, not random weights
    assert summary["NoC@90"].between(1, 2).all()  # max_clicks = 2 by default
    samples = pd.read_csv(run / "adaptive_samples.csv", dtype={"sample_id": str})
    assert list(samples["sample_id"]) == [f"{i:05d}" for i in range(4)]  # domain B's synthetic tiles, in order
    assert (samples["accepted"] == "gt").all()
    assert _images(notebook) == 1  # NoC@90 along the sequence
    text = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "domain B: synthetic tiles of another stain and scale" in text and "weights: RANDOM" in text


@pytest.mark.slow
def test_04_adapts_on_camelyon16_mini_by_default(tmp_path, monkeypatch, shared_data):
    run_notebook("04_online_adaptation.ipynb", tmp_path, monkeypatch, n_samples=2, max_clicks=1, base_epochs=1)
    samples = pd.read_csv(tmp_path / "adaptive_run" / "adaptive_samples.csv", dtype={"sample_id": str})
    expected = sorted(path.stem for path in (shared_data / "camelyon16_mini" / "images").iterdir())[:2]
    assert list(samples["sample_id"]) == expected and samples["adopted"].notna().all()
