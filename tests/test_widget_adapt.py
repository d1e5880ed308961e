"""The widget's "Adapt to my annotations" toggle: real vit_tiny (random weights, CPU), the synthetic
slide, the real adaptation engine (synchronous refits through ``background=False`` and
``refit_now``, so every result is deterministic), real checkpoint files."""

import numpy as np
import pytest
import torch
from scipy.special import expit

from histoclick import ClickSession, load_model
from histoclick.adaptation import AdaptConfig, Adapter, adaptation_files
from histoclick.evaluation.baselines import RegionGrowing
from histoclick.widgets import ClickWidget

FAST = AdaptConfig(
    steps=1, batch_size=1, lr=1e-3, max_extra_clicks=0, first_clicks="single", time_budget_s=None,
    replay_every=0, replay_size=1, replay_clicks=1, threads=1,
)


@pytest.fixture(scope="module")
def model():
    return load_model("vit_tiny", device="cpu", seed=0)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One embedding cache for the module: the encoder runs once for the tile all tests use."""
    return tmp_path_factory.mktemp("embeddings")


def open_widget(slide, model, tmp_path, cache_dir, **kwargs):
    return ClickWidget(
        slide.path, model, geojson=tmp_path / "objects.geojson", magnification=10, origin=(0, 0),
        size=128, cache_dir=cache_dir, **kwargs,
    )


def tissue_pixel(widget) -> tuple[int, int]:
    tissue = np.argwhere(widget.session.tile.image.mean(axis=2) < 200)
    row, column = tissue[len(tissue) // 2]
    return int(column), int(row)


def probs_of(model, widget, x, y) -> np.ndarray:
    """What ``model`` predicts for one positive click at tile pixel (x, y) of the widget's tile."""
    return expit(ClickSession(model, widget.session.tile).click(x, y).logits)


def decoder_tensors(model) -> dict[str, torch.Tensor]:
    return model.sam.mask_decoder.state_dict()


@pytest.fixture
def adapted(synthetic_slide, model, tmp_path, cache_dir):
    """A widget whose adapter (synchronous) has one accepted mask and one adopted refit."""
    adapter = Adapter(model, FAST, cache_dir=cache_dir, background=False)
    widget = open_widget(synthetic_slide, model, tmp_path, cache_dir, adapter=adapter)
    x, y = tissue_pixel(widget)
    mask = widget.click(x, y).mask
    widget.accept()
    status = adapter.refit_now()
    yield widget, adapter, (x, y), mask, status
    widget.close()
    adapter.close()


def test_an_accept_teaches_the_adapter_and_the_next_click_uses_the_adopted_decoder(adapted, model):
    widget, adapter, (x, y), mask, status = adapted
    assert widget.adaptation.toggle.value  # a given adapter continues: the toggle starts on
    (pair,) = adapter.pairs
    np.testing.assert_array_equal(pair.mask, mask)  # the accepted mask, in tile pixels
    assert torch.equal(pair.embedding.features, widget.method.session.embedding.features)
    assert status.refits == 1 and status.adopted and status.decoder == "adapted"
    assert adapter.model is not adapter.base

    step = widget.click(x, y)
    np.testing.assert_array_equal(step.probs, probs_of(adapter.model, widget, x, y))
    assert not np.allclose(step.probs, probs_of(model, widget, x, y))  # the decoder did change
    assert "1 pairs" in widget.adaptation.status.value and "adopted" in widget.adaptation.status.value
    assert widget.state()["adaptation"] == adapter.status.line()

    # Off: clicks use the widget's own model again; the adapter keeps its pairs and decoder.
    widget.adaptation.toggle.value = False  # what the browser's checkbox does
    widget.reset()
    np.testing.assert_array_equal(widget.click(x, y).probs, probs_of(model, widget, x, y))
    assert widget.state()["adaptation"] is None and len(adapter.pairs) == 1
    widget.accept()
    assert len(adapter.pairs) == 1  # nothing handed over while off


def test_revert_goes_back_to_the_base_decoder_and_keeps_the_pairs(adapted, model):
    widget, adapter, (x, y), _, _ = adapted
    widget.revert_adaptation()
    assert adapter.model is adapter.base and len(adapter.pairs) == 1
    assert "decoder: base" in widget.adaptation.status.value
    widget.reset()
    np.testing.assert_array_equal(widget.click(x, y).probs, probs_of(model, widget, x, y))


def test_the_saved_decoder_loads_with_load_model_and_a_loaded_adapter_resumes(
    adapted, synthetic_slide, tmp_path, cache_dir
):
    widget, adapter, (x, y), mask, _ = adapted
    files = widget.save_adapted_decoder()
    assert files == adaptation_files(tmp_path / "objects.geojson")  # next to the GeoJSON
    checkpoint = load_model(files.decoder, device="cpu")
    for name, tensor in decoder_tensors(adapter.model).items():
        assert torch.equal(decoder_tensors(checkpoint)[name], tensor), name

    # Tomorrow: the widget continues from the saved adapter (its base rebuilt from the checkpoint).
    resumed = Adapter.load(tmp_path / "objects.geojson", cache_dir=cache_dir, background=False)
    again = open_widget(synthetic_slide, resumed.base, tmp_path, cache_dir, adapter=resumed)
    try:
        (pair,) = resumed.pairs
        np.testing.assert_array_equal(pair.mask, mask)
        assert again.adaptation.toggle.value and resumed.status.decoder == "adapted"
        np.testing.assert_array_equal(again.click(x, y).probs, probs_of(adapter.model, again, x, y))
        again.accept()
        assert len(resumed.pairs) == 2
    finally:
        again.close()
        resumed.close()


def test_the_toggle_creates_a_background_adapter_whose_refit_the_clicks_pick_up(
    synthetic_slide, model, tmp_path, cache_dir
):
    widget = open_widget(synthetic_slide, model, tmp_path, cache_dir, adapt_config=FAST)
    try:
        assert not widget.adaptation.toggle.value and widget.adapter is None  # off by default
        assert "adaptation: off" in widget.adaptation.status.value
        widget.adaptation.toggle.value = True
        adapter = widget.adapter
        assert adapter is not None and adapter.background and adapter.config == FAST
        x, y = tissue_pixel(widget)
        widget.click(x, y)
        widget.accept()  # returns at once; the refit runs on the adapter's thread
        assert adapter.wait(timeout=60), "the background refit did not finish"
        step = widget.click(x, y)  # the status line is refreshed by the next redraw
        assert f"refit {adapter.status.last_refit_seconds:.1f} s" in widget.adaptation.status.value
        np.testing.assert_array_equal(step.probs, probs_of(adapter.model, widget, x, y))
    finally:
        widget.close()
    assert not adapter._worker.is_alive()  # closing the widget stops the adapter it created


def test_adaptation_is_offered_only_with_a_sam_model(synthetic_slide, model, tmp_path, cache_dir):
    widget = open_widget(synthetic_slide, RegionGrowing(), tmp_path, None)
    try:
        toggle = widget.adaptation.toggle
        assert toggle.disabled and "is not a SAM model" in toggle.tooltip
        with pytest.raises(ValueError, match="not a SAM model"):
            widget.set_adapt(True)
        assert not toggle.value
        widget._guard(widget.save_adapted_decoder)  # as the button: reported, not raised
        assert "turn on 'Adapt to my annotations'" in widget.last_error
    finally:
        widget.close()
    with pytest.raises(ValueError, match="need a SAM model"):
        open_widget(synthetic_slide, RegionGrowing(), tmp_path, None, adapt_config=FAST)
    other = Adapter(load_model("vit_tiny", device="cpu", seed=1), FAST, background=False)
    with pytest.raises(ValueError, match="give the widget the model the adapter was made for"):
        open_widget(synthetic_slide, model, tmp_path, cache_dir, adapter=other)


def test_saving_pairs_needs_an_embedding_cache_folder(synthetic_slide, model, tmp_path):
    widget = open_widget(synthetic_slide, model, tmp_path, None, adapt_config=FAST)
    try:
        widget.set_adapt(True)
        widget.click(*tissue_pixel(widget))
        widget.accept()
        widget.adapter.wait(timeout=60)
        with pytest.raises(ValueError, match="create the widget with cache_dir="):
            widget.save_adapted_decoder()
        assert not adaptation_files(tmp_path / "objects.geojson").decoder.exists()
    finally:
        widget.close()


def test_pixels_beyond_the_slide_edge_are_accepted_as_ignored(synthetic_slide, model, tmp_path, cache_dir):
    adapter = Adapter(model, FAST, cache_dir=cache_dir, background=False)
    # The synthetic slide is 2048 x 1536 level-0 pixels; this 128-pixel viewport at downsample 4
    # covers 512 x 512 of them, so its right and bottom halves are padding.
    widget = ClickWidget(
        synthetic_slide.path, model, geojson=tmp_path / "objects.geojson", magnification=10,
        origin=(1792, 1280), size=128, cache_dir=cache_dir, adapter=adapter,
    )
    try:
        tissue = np.argwhere(widget.session.tile.image[:64, :64].mean(axis=2) < 200)
        row, column = tissue[len(tissue) // 2]
        widget.click(int(column), int(row))
        widget.accept()
        (pair,) = adapter.pairs
        expected = np.zeros((128, 128), bool)
        expected[64:, :] = expected[:, 64:] = True
        np.testing.assert_array_equal(pair.ignore, expected)
    finally:
        widget.close()
