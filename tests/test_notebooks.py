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
    notebook = run_notebook("03_interactive_qupath_session.ipynb", tmp_path, monkeypatch)
    saved = read_geojson(tmp_path / "histoclick_objects.geojson")
    assert len(saved) == 1 and saved["classification"].iloc[0] == "Tumor"
    assert saved["measurements"].iloc[0]["histoclick clicks"] == 2.0
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    assert any("image/png" in output.get("data", {}) for output in outputs)  # the read-back figure


@pytest.mark.slow
def test_03_on_the_real_slide(tmp_path, monkeypatch, shared_data):
    run_notebook(
        "03_interactive_qupath_session.ipynb",
        tmp_path,
        monkeypatch,
        slide_path=str(shared_data / "slides" / "cmu_small_region.svs"),
        object_class="Stroma",
        geojson_path="real.geojson",
        scripted_clicks=[(200, 300, True), (400, 100, True), (50, 450, False)],
    )
    saved = read_geojson(tmp_path / "real.geojson")
    assert len(saved) == 1 and saved["classification"].iloc[0] == "Stroma"
    minx, miny, maxx, maxy = saved.geometry.iloc[0].bounds
    assert 0 <= minx < maxx <= 2220 and 0 <= miny < maxy <= 2967  # inside the slide, level-0 pixels


def _images(notebook: nbformat.NotebookNode) -> int:
    """How many PNG images the executed notebook displayed."""
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    return sum("image/png" in output.get("data", {}) for output in outputs)


@pytest.mark.slow
def test_01_zero_shot_comparison_with_defaults(tmp_path, monkeypatch):
    notebook = run_notebook("01_zero_shot_comparison.ipynb", tmp_path, monkeypatch)
    summary = pd.read_csv(tmp_path / "zero_shot_results" / "summary.csv", index_col=[0, 1])
    assert list(summary.index) == [
        ("synthetic", "sam:vit_tiny@random-seed-0"), ("synthetic", "region_growing"), ("synthetic", "grabcut")
    ]
    assert summary["NoC@90"].between(1, 5).all()  # max_clicks = 5 by default
    records = pd.read_csv(tmp_path / "zero_shot_results" / "records.csv")
    assert records.groupby("method")["sample"].nunique().eq(3).all()  # limit = 3
    assert _images(notebook) == 2  # the mIoU curves and the overlay figure


@pytest.mark.slow
def test_01_on_camelyon16_mini(tmp_path, monkeypatch, shared_data):
    run_notebook(
        "01_zero_shot_comparison.ipynb",
        tmp_path,
        monkeypatch,
        camelyon16_tiles=str(shared_data / "camelyon16_mini"),
        max_clicks=3,
        limit=2,
        n_overlays=1,
        out_dir="real",
    )
    summary = pd.read_csv(tmp_path / "real" / "summary.csv", index_col=[0, 1])
    assert set(summary.index.get_level_values("dataset")) == {"camelyon16_mini"}
    assert len(summary) == 3


@pytest.mark.slow
def test_02_finetuning_scenarios_with_defaults_in_one_epoch(tmp_path, monkeypatch):
    from histoclick import load_model

    # One epoch instead of the notebook's two: the same cells, half of CI's longest test.
    notebook = run_notebook("02_finetuning_scenarios.ipynb", tmp_path, monkeypatch, epochs=1)
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
def test_02_generalising_to_camelyon16_mini(tmp_path, monkeypatch, shared_data):
    run_notebook(
        "02_finetuning_scenarios.ipynb",
        tmp_path,
        monkeypatch,
        second_data=str(shared_data / "camelyon16_mini"),
        scenarios=["md", "enhanced"],
        eval_limit=1,
        epochs=1,
    )
    (run_dir,) = (tmp_path / "finetuning_runs").iterdir()
    summary = pd.read_csv(run_dir / "evaluation" / "summary.csv", index_col=[0, 1])
    assert set(summary.index) == {
        (dataset, method)
        for dataset in ("synthetic (test)", "camelyon16_mini")
        for method in ("zero-shot", "SAM^MD", "Ours (enhanced)")
    }


@pytest.mark.slow
def test_04_online_adaptation_static_vs_adaptive(tmp_path, monkeypatch):
    notebook = run_notebook("04_online_adaptation.ipynb", tmp_path, monkeypatch)
    summary = pd.read_csv(tmp_path / "adaptive_run" / "adaptive_summary.csv", index_col=0)
    assert list(summary.index) == ["static", "adaptive"]
    assert summary["NoC@90"].between(1, 2).all()  # max_clicks = 2 by default
    samples = pd.read_csv(tmp_path / "adaptive_run" / "adaptive_samples.csv")
    assert len(samples) == 4 and (samples["accepted"] == "gt").all()
    assert _images(notebook) == 1  # NoC@90 along the sequence


@pytest.mark.slow
def test_04_on_camelyon16_mini(tmp_path, monkeypatch, shared_data):
    run_notebook(
        "04_online_adaptation.ipynb", tmp_path, monkeypatch,
        adapt_data=str(shared_data / "camelyon16_mini"), n_samples=2, max_clicks=1,
    )
    samples = pd.read_csv(tmp_path / "adaptive_run" / "adaptive_samples.csv")
    assert len(samples) == 2 and samples["adopted"].notna().all()
