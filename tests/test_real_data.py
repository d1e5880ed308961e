"""histoclick.datasets.real_data: where notebooks find the real data, and what they print."""

from __future__ import annotations

import pytest
import torch

from histoclick import load_model
from histoclick.datasets.real_data import (
    CAMELYON16_MINI,
    CMU_SLIDE,
    REAL_DATA_ENV,
    choose_data,
    describe_weights,
    find_real_data,
)
from histoclick.models import SamModel


@pytest.fixture
def real_folder(tmp_path, monkeypatch):
    """A real data folder holding camelyon16_mini/ but no slide, named by $HISTOCLICK_DATA."""
    (tmp_path / CAMELYON16_MINI / "images").mkdir(parents=True)
    monkeypatch.setenv(REAL_DATA_ENV, str(tmp_path))
    return tmp_path


def test_auto_takes_the_real_item_and_says_where_from(real_folder):
    choice = choose_data("auto", CAMELYON16_MINI, "synthetic tiles")
    assert choice.path == real_folder / CAMELYON16_MINI
    assert choice.line == f"data: camelyon16_mini (real CAMELYON16 tiles, CC0) from {choice.path}"


def test_auto_falls_back_to_synthetic_and_says_what_is_missing(real_folder):
    choice = choose_data("auto", CMU_SLIDE, "a synthetic slide", label="slide")
    assert choice.path is None
    missing = real_folder / CMU_SLIDE
    assert choice.line.startswith(f"slide: a synthetic slide (no real data found: nothing at {missing};")
    assert "\n" not in choice.line


def test_real_without_the_item_names_the_place_and_the_fix(real_folder):
    missing = real_folder / CMU_SLIDE
    with pytest.raises(FileNotFoundError, match=f"nothing at {missing}.*set {REAL_DATA_ENV}"):
        choose_data("real", CMU_SLIDE, "a synthetic slide")


def test_synthetic_is_chosen_even_with_real_data_present(real_folder):
    assert choose_data("synthetic", CAMELYON16_MINI, "synthetic tiles").path is None


def test_bad_choices_and_a_missing_configured_folder_are_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="'auto', 'real', 'synthetic'"):
        choose_data("camelyon", CAMELYON16_MINI, "synthetic tiles")
    monkeypatch.setenv(REAL_DATA_ENV, str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=f"{REAL_DATA_ENV}=.*absent.* is not a folder"):
        find_real_data()


def test_without_the_variable_it_looks_next_to_the_project(monkeypatch, tmp_path):
    monkeypatch.delenv(REAL_DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # outside any checkout: found from the package's own location
    found = find_real_data()
    line = choose_data("auto", CAMELYON16_MINI, "synthetic tiles").line
    if found is None:
        assert "(no real data found: nothing at " in line and "shared/data" in line
    else:
        assert found.name == "data" and found.parent.name == "shared"


def test_describe_weights_flags_random_weights_only():
    tiny = load_model("vit_tiny", device="cpu")
    assert describe_weights(tiny).startswith("weights: RANDOM (vit_tiny, random weights (seed 0)):")
    # The same network under a trained model's identity (name, file digest) is not flagged...
    trained = SamModel(tiny.sam, "vit_b", torch.device("cpu"), "sam_vit_b.pth", "ab" * 32)
    assert describe_weights(trained) is None
    # ...but a decoder fine-tuned on a random image encoder is.
    on_random = SamModel(
        tiny.sam, "vit_b", torch.device("cpu"), "best.pt", "cd" * 32,
        encoder_identity="vit_b:random-seed-0",
    )
    assert describe_weights(on_random).startswith("weights: RANDOM (vit_b, best.pt):")
