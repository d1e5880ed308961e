"""ClickSession on the tiny SAM: masks, the multimask policy, logit feedback, undo, caches."""

import numpy as np
import pytest
import shapely
import torch

from histoclick import ClickSession, Tile, load_model
from histoclick.datasets.synthetic import make_tile
from histoclick.embeddings import EmbeddingCache


@pytest.fixture(scope="module")
def model():
    return load_model("vit_tiny", device="cpu")


@pytest.fixture(scope="module")
def image():
    return make_tile(seed=1, size=160)[0][:, :128]  # not square: exercises the resize and crop


def points_and_labels(*clicks):
    return np.array([[x, y] for x, y, _ in clicks], np.float32), np.array([int(p) for *_, p in clicks])


def test_first_click_keeps_best_of_three_then_single_masks(model, image):
    session = ClickSession(model, image)
    first = session.click(40, 60)
    assert first.mask.shape == first.logits.shape == image.shape[:2]
    assert first.mask.dtype == bool and first.logits.dtype == np.float32
    assert first.low_res_logits.shape == (1, 256, 256)
    assert first.multimask and first.model_seconds > 0
    candidates = model.decode(session.embedding, *points_and_labels((40, 60, True)), multimask=True)
    best = int(np.argmax(candidates.predicted_iou))
    np.testing.assert_array_equal(first.logits, candidates.logits[best])
    assert first.predicted_iou == pytest.approx(float(candidates.predicted_iou.max()))
    np.testing.assert_array_equal(first.mask, candidates.logits[best] > 0)

    second = session.click(100, 20, positive=False)
    assert not second.multimask
    assert session.clicks[1].is_positive is False and (session.clicks[1].x, session.clicks[1].y) == (100, 20)


def test_previous_logits_are_fed_back(model, image):
    session = ClickSession(model, image)
    first = session.click(40, 60)
    second = session.click(90, 120)
    points, labels = points_and_labels((40, 60, True), (90, 120, True))
    with_feedback = model.decode(session.embedding, points, labels, mask_input=first.low_res_logits)
    without = model.decode(session.embedding, points, labels)
    np.testing.assert_array_equal(second.logits, with_feedback.logits[0])
    assert not np.array_equal(second.logits, without.logits[0])


@pytest.mark.parametrize("policy, expected", [("never", [False, False]), ("always", [True, True])])
def test_multimask_policy_is_configurable_and_recorded(model, image, policy, expected):
    session = ClickSession(model, image, multimask=policy)
    assert [session.click(40, 60).multimask, session.click(60, 80).multimask] == expected


def test_unknown_multimask_policy(model, image):
    with pytest.raises(ValueError, match="multimask"):
        ClickSession(model, image, multimask="sometimes")


def test_undo_and_reset(model, image):
    session = ClickSession(model, image)
    first = session.click(40, 60)
    session.click(90, 120, positive=False)
    assert session.undo() is first and session.clicks == [first.click]
    # The next click builds on the first click's logits again, as if the undone one never was.
    again = session.click(20, 30)
    points, labels = points_and_labels((40, 60, True), (20, 30, True))
    expected = model.decode(session.embedding, points, labels, mask_input=first.low_res_logits)
    np.testing.assert_array_equal(again.logits, expected.logits[0])
    session.reset()
    assert session.clicks == [] and session.last is None and session.undo() is None
    assert session.click(40, 60).multimask  # a fresh start uses the first-click policy again


@pytest.mark.parametrize("x, y", [(-1, 10), (10, -0.5), (128, 10), (10, 160)])
def test_click_outside_the_tile(model, image, x, y):
    session = ClickSession(model, image)
    with pytest.raises(ValueError, match="outside the 128x160 tile"):
        session.click(x, y)
    assert session.clicks == []


def test_tile_geometry_is_in_level0(model, image):
    tile = Tile(image=image, origin=(1000.0, 2000.0), downsample=4.0)
    session = ClickSession(model, tile)
    assert session.geometry().is_empty
    result = session.click(40, 60)
    geometry = session.geometry()
    assert geometry.area == pytest.approx(result.mask.sum() * 16)
    minx, miny, maxx, maxy = geometry.bounds
    assert 1000 <= minx and maxx <= 1000 + 4 * 128 and 2000 <= miny and maxy <= 2000 + 4 * 160


def test_disk_cache_is_reused_across_sessions(model, image, tmp_path):
    first = ClickSession(model, image, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1
    # A new cache object (as in a new process) reads the file instead of encoding again.
    cache = EmbeddingCache(tmp_path)
    key = cache.key(model, image)
    assert files[0].stem == key
    second = ClickSession(model, image, cache_dir=tmp_path)
    assert torch.equal(first.embedding.features, second.embedding.features)
    other = load_model("vit_tiny", device="cpu", seed=5)
    ClickSession(other, image, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2  # keyed by model too


def test_damaged_cache_entry_is_recomputed(model, image, tmp_path):
    reference = ClickSession(model, image, cache_dir=tmp_path).embedding.features
    (entry,) = tmp_path.glob("*.pt")
    entry.write_bytes(b"garbage")
    recomputed = ClickSession(model, image, cache_dir=tmp_path).embedding.features
    assert torch.allclose(reference, recomputed)
    assert torch.load(entry, weights_only=True)["features"].shape == (1, 256, 64, 64)


def _array_bytes(root) -> int:
    """Bytes of every numpy array and torch tensor reachable from ``root`` (each buffer once)."""
    import gc

    seen, buffers, stack = set(), {}, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, torch.nn.Module)) or callable(obj):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            base = obj
            while isinstance(base.base, np.ndarray):
                base = base.base
            buffers[base.__array_interface__["data"][0]] = base.nbytes
        elif isinstance(obj, torch.Tensor):
            buffers[obj.untyped_storage().data_ptr()] = obj.untyped_storage().nbytes()
        else:
            stack.extend(gc.get_referents(obj))
    return sum(buffers.values())


def test_past_clicks_keep_only_low_resolution_logits(model):
    """Used to keep every click's full-resolution logits and mask (77 MB per click at 4000^2)."""
    image = make_tile(seed=2, size=640)[0]
    session = ClickSession(model, image)
    for x, y in [(100, 100), (300, 200), (500, 500), (200, 400), (50, 600)]:
        session.click(x, y)
    past = _array_bytes(session.results[:-1])
    # Per past click: 256 KiB of low-res logits and the mask packed to one bit per pixel.
    assert past <= 4 * (256 * 256 * 4 + 640 * 640 // 8 + 1024)
    current = _array_bytes(session.last)
    assert current >= 640 * 640 * 4  # the current prediction keeps its full-resolution logits


def test_undone_prediction_is_restored(model, image):
    session = ClickSession(model, image)
    first = session.click(40, 60)
    logits, mask = first.logits.copy(), first.mask.copy()
    session.click(90, 120)
    assert session.undo() is first
    np.testing.assert_array_equal(first.mask, mask)  # unpacked: exact
    np.testing.assert_allclose(first.logits, logits, rtol=0, atol=1e-6)  # upsampled again


@pytest.mark.parametrize("positive", [2, -1, "yes", None, 0.5])
def test_click_label_must_be_a_bool(model, image, positive):
    """positive=2 used to reach SAM, which reads it as a padding label and ignores the click."""
    session = ClickSession(model, image)
    with pytest.raises(ValueError, match="is_positive must be True/False"):
        session.click(40, 60, positive=positive)
    assert session.clicks == []


@pytest.mark.parametrize("x, y", [(float("nan"), 10), (10, float("inf")), (float("-inf"), 5)])
def test_click_coordinates_must_be_finite(model, image, x, y):
    session = ClickSession(model, image)
    with pytest.raises(ValueError, match="finite number of tile pixels"):
        session.click(x, y)
    assert session.clicks == []


def test_zero_and_one_labels_are_clicks(model, image):
    session = ClickSession(model, image)
    session.click(40, 60, positive=1)
    session.click(90, 120, positive=np.False_)
    assert [c.is_positive for c in session.clicks] == [True, False]


def test_readme_geometry_with_a_vertex_bound_returns(model):
    """The README's ``session.geometry(max_vertices=2000)`` used to loop forever after one click."""
    session = ClickSession(model, make_tile(seed=0, size=512)[0])
    session.click(256, 256)
    exact = session.geometry()
    bounded = session.geometry(max_vertices=2000)
    assert shapely.get_num_coordinates(exact) > 2000  # random weights: a speckled mask
    assert shapely.get_num_coordinates(bounded) <= 2000 and bounded.is_valid


def test_the_widget_click_state_shares_the_session_bookkeeping(model, image):
    """The widget's ClickState (any Method; here SAM through SamMethod) and ClickSession are one
    ClickHistory: same masks after each click and undo, same bounds check, same geometry."""
    from histoclick.evaluation.sam_method import SamMethod
    from histoclick.session import ClickHistory
    from histoclick.widgets.state import ClickState

    tile = Tile(image=image, origin=(1000.0, 2000.0), downsample=4.0)
    session, state = ClickSession(model, tile), ClickState(SamMethod(model), tile)
    assert isinstance(session, ClickHistory) and isinstance(state, ClickHistory)
    for x, y, positive in ((40, 60, True), (90, 120, False)):
        np.testing.assert_array_equal(session.click(x, y, positive).mask, state.click(x, y, positive).mask)
    assert session.clicks == state.clicks
    session.undo(), state.undo()
    np.testing.assert_array_equal(session.mask, state.mask)
    assert shapely.equals(session.geometry(), state.geometry())
    for clicks in (session, state):
        with pytest.raises(ValueError, match="outside the 128x160 tile"):
            clicks.click(128, 10)
        clicks.reset()
        assert clicks.clicks == [] and clicks.mask is None and clicks.geometry().is_empty
