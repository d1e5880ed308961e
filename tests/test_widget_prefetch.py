"""Background embeddings of the click widget (histoclick/widgets/prefetch.py): real vit_tiny
(random weights, CPU), the synthetic pyramidal slide, real cache folders. Encoder runs are counted
with forward hooks on the real encoder; a "gate" (a forward pre-hook that holds the worker thread
in the encoder's first block until the test lets it go) makes the timing-dependent cases exact."""

import threading
from contextlib import contextmanager

import pytest
import torch

from histoclick import load_model
from histoclick.embeddings import EmbeddingCache
from histoclick.slides import open_slide
from histoclick.widgets import ClickWidget
from histoclick.widgets.prefetch import Prefetcher, nearby
from histoclick.widgets.viewport import Viewport

WORKERS = ("histoclick-embedding", "histoclick-prefetch")


@pytest.fixture(scope="module")
def model():
    return load_model("vit_tiny", device="cpu", seed=0)


@pytest.fixture
def encoder_outputs(model):
    """Every embedding the real encoder finishes, in order (features, on any thread)."""
    outputs: list[torch.Tensor] = []
    hook = model.sam.image_encoder.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    yield outputs
    hook.remove()


@contextmanager
def gate(model):
    """Holds the first worker embedding that reaches the encoder's first block until released;
    yields (entered, release) events."""
    entered, release, used = threading.Event(), threading.Event(), []

    def hold(_module, _inputs):
        if threading.current_thread().name in WORKERS and not used:
            used.append(True)
            entered.set()
            assert release.wait(60), "the test never released the gate"

    hook = model.sam.image_encoder.blocks[0].register_forward_pre_hook(hold)
    try:
        yield entered, release
    finally:
        release.set()
        hook.remove()


def open_widget(slide, model, tmp_path, cache_dir, **kwargs):
    return ClickWidget(
        slide.path, model, geojson=tmp_path / "objects.geojson", magnification=5, origin=(0, 0),
        size=128, cache_dir=cache_dir, **kwargs,
    )


def cached(model, cache_dir, slide, viewport: Viewport) -> bool:
    tile = slide.read_region(*viewport.origin, viewport.size, viewport.size, downsample=viewport.downsample)
    return EmbeddingCache.key(model, tile.image) in EmbeddingCache(cache_dir)


def test_nearby_viewports_are_prefetched_and_a_pan_there_runs_no_encoder(
    synthetic_slide, model, tmp_path, encoder_outputs
):
    cache_dir = tmp_path / "embeddings"
    widget = open_widget(synthetic_slide, model, tmp_path, cache_dir)
    try:
        around = nearby(widget.navigator, [ds for _, ds in widget.zoom_dropdown.options])
        # At 5x (downsample 8) in the top-left corner: right, down, then 10x and 2.5x.
        assert [(v.origin, v.downsample) for v in around] == [
            ((1024, 0), 8.0), ((0, 1024), 8.0), ((256, 256), 4.0), ((0, 0), 16.0)
        ]
        assert widget.prefetcher.wait(120)
        assert len(encoder_outputs) == 1 + len(around)  # the shown viewport, then each neighbour
        assert all(cached(model, cache_dir, widget.slide, v) for v in around)
        assert "nearby viewports ready 4/4" in widget.status.value

        shown = len(encoder_outputs)
        widget.pan("right")
        assert widget.method.ready  # the embedding came from the cache, at once
        step = widget.click(60, 60)
        assert len(encoder_outputs) == shown  # the pan and the click ran no encoder
        assert step.mask.shape == (128, 128)
        features = widget.method.session.embedding.features
        assert torch.equal(features, encoder_outputs[1])  # the right neighbour's, prefetched first
    finally:
        widget.close()


def test_navigation_cancels_stale_jobs_and_the_shown_viewport_goes_first(
    synthetic_slide, model, tmp_path, encoder_outputs
):
    cache_dir = tmp_path / "embeddings"
    slide = open_slide(synthetic_slide.path)
    size, ds = 128, 8.0
    stale, wanted = (Viewport(o, size, ds, slide.dimensions) for o in ((0, 0), (1024, 0)))
    shown = slide.read_region(0, 1024, size, size, downsample=ds)
    prefetcher = Prefetcher(model, slide, cache_dir=cache_dir)
    try:
        with gate(model) as (entered, release):
            prefetcher.schedule([stale])
            assert entered.wait(60)  # the stale viewport's embedding is in the encoder
            prefetcher.schedule([wanted])  # navigation: the old list is dropped
            future = prefetcher.session_for(shown.image)
            assert not future.done() and prefetcher.status.computing
            release.set()
            session = future.result(60)
        assert prefetcher.wait(60)
        assert len(encoder_outputs) == 2  # the stale embedding stopped after its first block
        assert torch.equal(encoder_outputs[0], session.embedding.features)  # the shown one first
        assert not cached(model, cache_dir, slide, stale)
        assert cached(model, cache_dir, slide, wanted)
        assert prefetcher.status.prefetched == prefetcher.status.nearby == 1
    finally:
        prefetcher.close()
        slide.close()


def test_the_widget_stays_usable_while_the_embedding_is_computed_and_closing_stops_the_workers(
    synthetic_slide, model, tmp_path, encoder_outputs
):
    before = set(threading.enumerate())
    with gate(model) as (entered, release):
        widget = open_widget(synthetic_slide, model, tmp_path, tmp_path / "embeddings")
        try:
            assert entered.wait(60)  # the first viewport's embedding is being computed
            assert not widget.method.ready
            widget._events._dom_handlers(
                {"event": "click", "button": 0, "clientX": 20.0, "clientY": 30.0,
                 "boundingRectLeft": 0.0, "boundingRectTop": 0.0, "boundingRectWidth": 128.0,
                 "boundingRectHeight": 128.0}
            )
            assert "still being computed" in widget.last_error  # refused, nothing waited
            assert widget.session.clicks == []
            assert "computing this viewport's embedding" in widget.status.value
            widget.pan("down")  # navigation while computing: the first viewport is dropped
            widget.opacity.value = 0.7
            assert widget.last_error is None and widget.viewport.origin == (0, 1024)
            release.set()
            widget.click(60, 60)  # a click from code waits for the embedding
            assert len(encoder_outputs) >= 1
            assert torch.equal(encoder_outputs[0], widget.method.session.embedding.features)
            workers = [t for t in set(threading.enumerate()) - before if t.name in WORKERS]
            assert len(workers) == 2 and all(t.is_alive() for t in workers)
        finally:
            widget.close()
    assert not any(t.is_alive() for t in workers)
    with pytest.raises(RuntimeError, match="closed"):
        widget.prefetcher.schedule([])


def test_errors_in_the_worker_reach_the_status_line(synthetic_slide, model, tmp_path):
    not_a_folder = tmp_path / "cache-is-a-file"
    not_a_folder.write_text("")
    widget = open_widget(synthetic_slide, model, tmp_path, not_a_folder)
    try:
        with pytest.raises(OSError):  # the embedding could not be stored: the click says why
            widget.click(60, 60)
        assert "this viewport's embedding failed" in widget.status.value
        assert "color:#c00" in widget.status.value
    finally:
        widget.close()
