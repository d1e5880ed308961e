"""Online adaptation (histoclick.adaptation) on the real SAM decoder of vit_tiny (random weights, CPU).

The controlled domain: image embeddings whose first 64 channels say where the object is (+s
inside, -s outside, on noise). The random base decoder has never seen that code, so it must
segment poorly, and a decoder trained on a few accepted masks of the domain must do better on
later samples of it. Embeddings are made directly (no image encoder), which keeps the tests fast.
"""

from __future__ import annotations

import dataclasses
import os
import threading

import cv2
import numpy as np
import pytest
import torch

from histoclick import ClickSession, load_model
from histoclick.adaptation import AdaptConfig, Adapter, adaptation_files, replay_score
from histoclick.adaptation.store import cached_embedding
from histoclick.embeddings import EmbeddingCache
from histoclick.training import ClickTrainingConfig, FinetuneConfig
from histoclick.evaluation import make_method
from histoclick.models.sam_model import Embedding

SIZE = 128  # tile pixels of the synthetic samples


def domain_sample(seed: int, signal: float = 4.0) -> tuple[Embedding, np.ndarray]:
    """An ellipse object and an embedding that encodes it in channels 0..63."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cy, cx = rng.uniform(0.35, 0.65, 2) * SIZE
    ry, rx = rng.uniform(0.15, 0.3, 2) * SIZE
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    tokens = cv2.resize(mask.astype(np.float32), (64, 64), interpolation=cv2.INTER_AREA)
    features = rng.normal(0.0, 1.0, (1, 256, 64, 64)).astype(np.float32)
    features[0, :64] += signal * (2 * tokens - 1)
    return Embedding(torch.from_numpy(features), (1024, 1024), (SIZE, SIZE)), mask


def config(**changes) -> AdaptConfig:
    settings = dict(
        steps=5, batch_size=2, lr=1e-3, max_extra_clicks=0, first_clicks="single",
        time_budget_s=None, replay_every=0, replay_size=1, replay_clicks=1, threads=1,
        nice=0,  # the worker's priority is tested in test_background.py; here it must not starve
    )
    return AdaptConfig(**{**settings, **changes})


def decoder_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.sam.mask_decoder.state_dict().items()}


@pytest.fixture(scope="module")
def base():
    return load_model("vit_tiny", device="cpu", seed=0)


@pytest.fixture(scope="module")
def tile_image():
    """A tile whose embedding-cache entry is a domain embedding (so sessions skip the encoder)."""
    return np.zeros((SIZE, SIZE, 3), np.uint8)


@pytest.fixture(scope="module")
def trained(base, tile_image, tmp_path_factory):
    """An adapter refit in the background on 3 domain pairs while clicks run; the clicks' logits,
    and the old and new models, for the assertions."""
    cache_dir = tmp_path_factory.mktemp("embeddings")
    embedding, _ = domain_sample(50)
    EmbeddingCache(cache_dir).store(EmbeddingCache.key(base, tile_image), embedding)
    adapter = Adapter(base, config(), cache_dir=cache_dir, background=False)  # accepts queue nothing
    for seed in range(3):
        pair_embedding, mask = domain_sample(seed)
        adapter.accept(f"pair-{seed}", mask, embedding=pair_embedding)
    old = adapter.model
    old_state = decoder_state(old)
    session = adapter.session(tile_image)
    during = []
    adapter.request_refit()
    while True:
        running = adapter.status.running
        session.reset()
        during.append(session.click(SIZE / 2, SIZE / 2).logits)
        if not running:
            break
        adapter.wait(timeout=0.5)  # a user's pace: the (lower-priority) refit gets the CPU between clicks
    assert adapter.wait(timeout=600)
    adapter.close()
    return {"adapter": adapter, "old": old, "old_state": old_state, "during": during, "cache_dir": cache_dir}


def test_background_refit_swaps_whole_decoders_and_never_changes_a_published_one(trained, tile_image):
    adapter, old = trained["adapter"], trained["old"]
    new = adapter.model
    assert adapter.status.adopted and new is not old and adapter.status.decoder == "adapted"
    assert adapter.status.error is None and adapter.status.refits == 1
    # Copy-on-refit: the decoder clicks used before is bit for bit what it was.
    for name, tensor in decoder_state(old).items():
        assert torch.equal(tensor, trained["old_state"][name]), name
    references = []
    for model in (old, new):
        session = ClickSession(model, tile_image, cache_dir=trained["cache_dir"])
        references.append(session.click(SIZE / 2, SIZE / 2).logits)
    assert np.abs(references[0] - references[1]).max() > 1e-2  # the two decoders differ clearly
    assert len(trained["during"]) >= 2  # clicks ran while the refit did
    for logits in trained["during"]:  # each click ran wholly on one decoder, never on a mix
        assert min(np.abs(logits - ref).max() for ref in references) < 1e-6


def test_adaptation_improves_noc_on_a_domain_the_base_has_not_seen(trained, base):
    later = [(*domain_sample(100 + i), None) for i in range(2)]  # samples after the training ones
    static = replay_score(base, later, clicks=3)
    adapted = replay_score(trained["adapter"].model, later, clicks=3)
    assert static.miou < 0.3 and adapted.miou > static.miou + 0.2
    assert adapted.noc85 < static.noc85


def test_revert_returns_to_the_base_decoder_and_drops_a_running_refit(trained, base, tile_image):
    adapter = Adapter(base, config(steps=1), background=False)
    adapter.accept("pair", domain_sample(0)[1], embedding=domain_sample(0)[0])
    adapter.restore(adapter.pairs, trained["adapter"].model, refits=1)
    assert adapter.model is trained["adapter"].model
    reverted = threading.Event()
    original = adapter._train_and_judge

    def revert_midway(*args):  # a revert arriving while a refit trains
        adapter.revert()
        reverted.set()
        original(*args)

    adapter._train_and_judge = revert_midway
    adapter.refit_now()
    assert reverted.is_set() and adapter.model is adapter.base and adapter.status.decoder == "base"


@pytest.mark.parametrize("where", ["this thread", "worker process"])
def test_guard_rail_rejects_a_refit_that_is_worse_on_the_replay(base, where):
    adapter = Adapter(base, config(steps=3), background=False)
    for seed in range(3):  # contradictory accepts: the complement of what the domain marks
        embedding, mask = domain_sample(seed)
        adapter.accept(f"wrong-{seed}", ~mask, embedding=embedding, held_out=False)
    embedding, mask = domain_sample(10)
    adapter.accept("right", mask, embedding=embedding, held_out=True)
    if where == "this thread":
        status = adapter.refit_now()
    else:
        adapter.request_refit()
        assert adapter.wait(timeout=600)
        status = adapter.status
        adapter.close()
    assert status.replay_after.miou < status.replay_before.miou  # the refit is worse on the replay
    assert status.adopted is False and adapter.model is adapter.base and status.decoder == "base"
    assert "kept the previous decoder" in status.line()


def test_background_refits_train_in_the_worker_process_as_in_this_thread(base):
    """The worker process gets each pair once (the second refit sends only the new one) and
    trains as refit_now does; its torch threads and priority are its own, this process's stay."""
    threads, nice = torch.get_num_threads(), os.getpriority(os.PRIO_PROCESS, 0)
    here = Adapter(base, config(replay_every=3), background=False)
    there = Adapter(base, config(replay_every=3), background=False)  # request_refit starts the process
    try:
        for accepted in ((0, 1), (2,)):  # the 3rd accept is held out as replay
            for adapter in (here, there):
                for seed in accepted:
                    embedding, mask = domain_sample(seed)
                    adapter.accept(f"p{seed}", mask, embedding=embedding)
            # One torch thread, as in the worker: another count sums in another order, and Adam
            # turns those last-bit differences into visibly different steps.
            torch.set_num_threads(1)
            try:
                here.refit_now()
            finally:
                torch.set_num_threads(threads)
            there.request_refit()
            assert there.wait(timeout=600) and there.status.error is None
            assert there._process is not None and there._shipped == len(there.pairs)
            for name in ("adopted", "refits", "last_steps", "training_pairs", "replay_pairs"):
                assert getattr(there.status, name) == getattr(here.status, name), name
            assert there.status.replay_after.miou == pytest.approx(here.status.replay_after.miou, abs=1e-4)
            expected = decoder_state(here.model)
            for name, tensor in decoder_state(there.model).items():
                assert torch.allclose(tensor, expected[name], atol=1e-5), name
    finally:
        there.close()
    assert there._process is None
    assert (torch.get_num_threads(), os.getpriority(os.PRIO_PROCESS, 0)) == (threads, nice)


def test_refits_are_deterministic_with_a_seed(base):
    digests = []
    for _ in range(2):
        adapter = Adapter(base, config(steps=1, batch_size=1, seed=3), background=False)
        for seed in range(2):
            embedding, mask = domain_sample(seed)
            adapter.accept(f"p{seed}", mask, embedding=embedding)
        adapter.refit_now()
        digests.append((adapter.model.identity, adapter.status.replay_after))
    assert digests[0] == digests[1]


def test_save_and_load_next_to_a_geojson_and_in_a_qupath_project(trained, tmp_path, tile_image):
    adapter, cache_dir = trained["adapter"], trained["cache_dir"]
    files = adapter.save(tmp_path / "tumour.geojson")
    assert files == adaptation_files(tmp_path / "tumour.geojson")
    assert files.decoder.name == "tumour.histoclick-decoder.pt" and files.pairs.is_file()
    # The checkpoint is an ordinary histoclick fine-tuned checkpoint.
    loaded = load_model(files.decoder, device="cpu")
    reference = ClickSession(adapter.model, tile_image, cache_dir=cache_dir).click(40, 60).logits
    assert np.allclose(ClickSession(loaded, tile_image, cache_dir=cache_dir).click(40, 60).logits, reference, atol=1e-5)
    assert make_method(f"sam:{files.decoder}", device="cpu").name.startswith("sam:vit_tiny+md@")
    # Tomorrow: the same decoder, the same pairs, their embeddings from the cache.
    restored = Adapter.load(tmp_path / "tumour.geojson", cache_dir=cache_dir, device="cpu", background=False)
    assert [p.key for p in restored.pairs] == [p.key for p in adapter.pairs]
    assert all(np.array_equal(a.mask, b.mask) and a.held_out == b.held_out for a, b in zip(restored.pairs, adapter.pairs))
    assert torch.equal(restored.pairs[0].embedding.features, adapter.pairs[0].embedding.features)
    assert restored.status.decoder == "adapted" and restored.status.refits == 1
    assert np.allclose(ClickSession(restored.model, tile_image, cache_dir=cache_dir).click(40, 60).logits, reference, atol=1e-5)
    # A QuPath project keeps them in its folder.
    project = tmp_path / "project"
    project.mkdir()
    (project / "project.qpproj").write_text("{}")
    files = adapter.save(project / "project.qpproj")
    assert files.decoder == project / "histoclick" / "adapted-decoder.pt" and files.pairs.is_file()
    # Without the embedding cache the pairs cannot come back: a clear error, nothing guessed.
    with pytest.raises(FileNotFoundError, match="not in the embedding cache"):
        Adapter.load(project, cache_dir=tmp_path / "empty-cache", device="cpu", background=False)


def test_bad_input_is_refused_with_the_reason(base, tmp_path):
    with pytest.raises(ValueError, match="scenario must be one of md, enhanced"):
        AdaptConfig(scenario="whole")
    adapter = Adapter(base, config(), background=False)
    embedding, mask = domain_sample(0)
    with pytest.raises(ValueError, match=r"the mask is \(64, 64\) pixels but its tile is \(128, 128\)"):
        adapter.accept("k", mask[:64, :64], embedding=embedding)
    with pytest.raises(ValueError, match="the accepted mask is empty"):
        adapter.accept("k", np.zeros_like(mask), embedding=embedding)
    with pytest.raises(FileNotFoundError, match="pass the cache_dir the annotation session used"):
        adapter.accept("unknown-key", mask)
    adapter.accept("k", mask, embedding=embedding)
    with pytest.raises(ValueError, match="create it with cache_dir="):
        adapter.save(tmp_path / "a.geojson")
    with pytest.raises(ValueError, match="neither a .geojson file nor a QuPath project"):
        adaptation_files(tmp_path)
    assert adapter.status.pairs == 1 and not adapter.status.running  # no background: no refit
    with pytest.raises(FileNotFoundError):
        cached_embedding(None, "k", base, (SIZE, SIZE))


def test_adaptation_and_finetuning_share_one_click_training_config():
    shared = {f.name for f in dataclasses.fields(ClickTrainingConfig)}
    for extended in (AdaptConfig, FinetuneConfig):
        assert issubclass(extended, ClickTrainingConfig)
        assert shared < {f.name for f in dataclasses.fields(extended)}
    with pytest.raises(ValueError, match="lr must be a positive number"):
        AdaptConfig(lr=0)
    # An adaptation saved before the shared config (no iou_loss_weight) loads with the default.
    saved = AdaptConfig(lr=3e-4).to_dict()
    del saved["iou_loss_weight"]
    assert AdaptConfig(**saved) == AdaptConfig(lr=3e-4)
