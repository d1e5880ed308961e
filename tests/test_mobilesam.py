"""MobileSAM (vit_t): the official checkpoint's layout, load_model by path, name and download
cache, clicks and the embedding cache against MobileSAM's own predictor, and one fine-tuning step
through its TinyViT encoder.

No MobileSAM weights can be downloaded here: the checkpoint is random weights written by
mobile_sam's own builder in the official file's format (a plain state_dict), so it takes the
code path of ``mobile_sam.pt``. A vit_t embedding costs seconds on a CPU: the tests share few.
"""

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from histoclick import ClickSession, load_model
from histoclick.cli import main
from histoclick.datasets.synthetic import make_tile
from histoclick.embeddings import EmbeddingCache
from histoclick.models import OFFICIAL_CHECKPOINTS, CheckpointError, official_checkpoint
from histoclick.models.finetuned import base_reference, save_checkpoint
from histoclick.models.tiny_vit import FrozenNormTinyViT  # imports mobile_sam without its warnings
from histoclick.training import FinetuneConfig, TileSet, TrainingData, apply_scenario
from histoclick.training.loop import ClickTrainingModel, training_step
from mobile_sam import SamPredictor, build_sam_vit_t
from mobile_sam.modeling.tiny_vit_sam import Attention


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """MobileSAM's own model with random weights (attention biases and norm statistics too, which
    start at constants) and its state_dict saved as ``mobile_sam.pt``."""
    torch.manual_seed(5)
    reference = build_sam_vit_t()
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            if name.endswith(("attention_biases", "running_mean")):
                tensor.normal_(0.0, 0.5)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
    reference.eval()  # as MobileSAM's README does after loading: caches the attention biases
    path = tmp_path_factory.mktemp("mobile_sam") / "mobile_sam.pt"
    torch.save(reference.state_dict(), path)
    return reference, path


def attention_layers(model):
    return [m for m in model.sam.image_encoder.modules() if isinstance(m, Attention)]


def test_checkpoint_loads_by_path_and_name_with_mobile_sams_tensors(official):
    reference, path = official
    expected = reference.state_dict()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    for model in (load_model(path, device="cpu"), load_model("vit_t", device="cpu", checkpoint=path)):
        assert model.name == "vit_t" and model.identity == f"vit_t:{digest}"
        assert isinstance(model.sam.image_encoder, FrozenNormTinyViT)
        loaded = model.sam.state_dict()  # loaded strictly: the same names and shapes
        assert all(torch.equal(loaded[k], v) for k, v in expected.items())
        for layer in attention_layers(model):  # eval mode caches the loaded biases, not the initial ones
            assert torch.equal(layer.ab, layer.attention_biases[:, layer.attention_bias_idxs])
    with pytest.raises(CheckpointError, match="holds a vit_t checkpoint, but vit_b was asked for"):
        load_model("vit_b", device="cpu", checkpoint=path)


def test_official_vit_t_is_downloaded_verified_cached_and_listed(official, tmp_path, monkeypatch, capsys):
    _, path = official
    cache = tmp_path / "cache"
    monkeypatch.setenv("HISTOCLICK_CHECKPOINT_DIR", str(cache))
    published = OFFICIAL_CHECKPOINTS["vit_t"]
    assert published.url.startswith("https://github.com/ChaoningZhang/MobileSAM/raw/")
    # The published file cannot be fetched here: a stand-in's URL and digest take its path.
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    stand_in = dataclasses.replace(published, sha256=digest, base_url=path.parent.as_uri() + "/")
    monkeypatch.setitem(OFFICIAL_CHECKPOINTS, "vit_t", stand_in)
    model = load_model("vit_t", device="cpu")
    assert (cache / "mobile_sam.pt").read_bytes() == path.read_bytes()
    assert model.name == "vit_t" and model.identity == f"vit_t:{digest}"
    assert official_checkpoint("vit_t", download=False) == cache / "mobile_sam.pt"

    monkeypatch.setitem(OFFICIAL_CHECKPOINTS, "vit_t", published)
    with pytest.raises(CheckpointError, match="not the published 6dbb9052"):
        load_model("vit_t", device="cpu")
    assert main(["checkpoints"]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["vit_t"]]
    assert "mobile_sam.pt" in line and "damaged" in line and published.url in line


@pytest.mark.slow
def test_clicks_and_cached_embedding_match_mobile_sams_predictor(official, tmp_path):
    reference, path = official
    image = make_tile(seed=2, size=192)[0]
    x, y = 90, 100
    predictor = SamPredictor(reference)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(np.array([[x, y]]), np.array([1]), multimask_output=True)

    model = load_model(path, device="cpu")
    session = ClickSession(model, image, cache_dir=tmp_path, multimask="first")
    torch.testing.assert_close(session.embedding.features, predictor.features)
    result = session.click(x, y)
    np.testing.assert_array_equal(result.mask, masks[scores.argmax()])
    assert result.predicted_iou == pytest.approx(scores.max(), abs=1e-5)

    key = EmbeddingCache.key(model, image)
    stored = EmbeddingCache(tmp_path).load(key, model, image.shape[:2])  # a new process's view
    assert stored is not None and torch.equal(stored.features, session.embedding.features)
    assert key != EmbeddingCache.key(load_model("vit_tiny", device="cpu"), image)


@pytest.mark.slow
def test_scenarios_and_one_encoder_training_step(official, tmp_path):
    _, path = official
    model = load_model(path, device="cpu")
    encoder = {f"image_encoder.{n}" for n, _ in model.sam.image_encoder.named_parameters()}
    assert set(apply_scenario(model, "md")).isdisjoint(encoder)
    assert encoder <= set(apply_scenario(model, "whole"))
    base = base_reference(model)
    trainable = apply_scenario(model, "ie_md")
    assert encoder <= set(trainable)
    buffers = {n: t.clone() for n, t in model.sam.state_dict().items() if n not in dict(model.sam.named_parameters())}
    before = {n: p.detach().clone() for n, p in model.sam.named_parameters()}

    config = FinetuneConfig(scenario="ie_md", lr=1e-3)
    data = TrainingData(TileSet.from_pairs([make_tile(3, 128)]), model, frozen_encoder=False)
    batch = torch.utils.data.default_collate([data[0]])
    assert batch["inputs"].shape == (1, 3, 1024, 1024)
    optimizer = torch.optim.AdamW([p for p in model.sam.parameters() if p.requires_grad], lr=config.lr)
    model.sam.train()  # as finetune does
    training_step(ClickTrainingModel(model, frozen_encoder=False), optimizer, batch, 0, np.random.default_rng(0), config)
    model.sam.eval()

    after = dict(model.sam.named_parameters())
    for name in ("patch_embed.seq.0.c.weight", "layers.1.blocks.0.attn.attention_biases", "neck.0.weight"):
        assert not torch.equal(before[f"image_encoder.{name}"], after[f"image_encoder.{name}"]), name
    state = model.sam.state_dict()  # norm statistics are buffers: frozen, as checkpoints omit them
    assert all(torch.equal(state[n], t) for n, t in buffers.items())
    for layer in attention_layers(model):  # eval mode uses the trained biases
        assert torch.equal(layer.ab, layer.attention_biases[:, layer.attention_bias_idxs])

    checkpoint = save_checkpoint(
        tmp_path / "ie_md.pt", model, base=base, scenario="ie_md", trainable=trainable,
        config=config.to_dict(), epoch=1,
    )
    reloaded = load_model(checkpoint, device="cpu")
    assert reloaded.name == "vit_t" and reloaded.encoder_identity != base["identity"]
    assert all(torch.equal(reloaded.sam.state_dict()[n], t) for n, t in state.items())
    for ours, theirs in zip(attention_layers(reloaded), attention_layers(model)):
        assert torch.equal(ours.ab, theirs.ab)
    assert set(apply_scenario(reloaded, "enhanced")).isdisjoint(encoder)  # the decoder only
