"""Fine-tuning on the tiny SAM: scenarios, one optimizer step, loss, clicks, data, checkpoints, CLI."""

import argparse
import csv
import hashlib
import math
import shutil

import numpy as np
import pytest
import torch

from histoclick import ClickSession, load_model
from histoclick.cli import finetune as finetune_cli
from histoclick.datasets.synthetic import make_tile, write_sample
from histoclick.evaluation.naming import method_name
from histoclick.models import CheckpointError, save_state_dict
from histoclick.models.enhanced_decoder import ACTIVATIONS, NORMS, EnhancedDecoderConfig, EnhancedMaskDecoder
from histoclick.training import (
    LOSSES,
    SCENARIOS,
    FinetuneConfig,
    TileSet,
    TrainingData,
    apply_scenario,
    finetune,
    next_training_click,
    normalized_focal_loss,
)
from histoclick.training.clicks import FIRST_CLICKS
from histoclick.training.data import AUGMENTATIONS, low_res_target
from histoclick.training.loop import ClickTrainingModel, batch_loss, training_step
from histoclick.training.scenarios import frozen_encoder


# A small enhanced decoder for speed where its default shape is not what a test is about.
LIGHT = EnhancedDecoderConfig(width=8, heads=2, attention_dim=32, kv_pool=2)


@pytest.fixture(scope="module")
def pairs():
    return [make_tile(seed, 128) for seed in range(3)]


def tiny():
    return load_model("vit_tiny", device="cpu", seed=1)


def module_names(model, *modules):
    return {f"{m}.{n}" for m in modules for n, _ in getattr(model.sam, m).named_parameters()}


@pytest.mark.parametrize(
    "scenario, modules",
    [
        ("md", ["mask_decoder"]),
        ("ie_md", ["image_encoder", "mask_decoder"]),
        ("whole", ["image_encoder", "prompt_encoder", "mask_decoder"]),
        ("enhanced", ["mask_decoder"]),
    ],
)
def test_scenario_leaves_exactly_its_modules_trainable(scenario, modules):
    model = tiny()
    names = apply_scenario(model, scenario)
    assert set(names) == module_names(model, *modules) and len(names) == len(set(names))
    assert {n for n, p in model.sam.named_parameters() if p.requires_grad} == set(names)
    assert isinstance(model.sam.mask_decoder, EnhancedMaskDecoder) == (scenario == "enhanced")
    assert frozen_encoder(scenario) == ("image_encoder" not in modules)


def test_scenario_errors():
    with pytest.raises(ValueError, match="unknown scenario 'decoder': use one of md, ie_md, whole, enhanced"):
        apply_scenario(tiny(), "decoder")
    model = tiny()
    apply_scenario(model, "enhanced")
    with pytest.raises(ValueError, match="has an enhanced decoder"):
        apply_scenario(model, "md")


# Trainable tensors that one single-mask step on point prompts with a mask prompt cannot
# reach: the three multimask output heads, the box-corner embeddings, and the "no mask prompt"
# embedding (the trained prediction has one).
UNREACHED = {
    "mask_decoder.output_hypernetworks_mlps.1", "mask_decoder.output_hypernetworks_mlps.2",
    "mask_decoder.output_hypernetworks_mlps.3", "prompt_encoder.point_embeddings.2",
    "prompt_encoder.point_embeddings.3", "prompt_encoder.no_mask_embed",
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_one_step_changes_trainable_tensors_only(scenario, pairs):
    model = tiny()
    trainable = set(apply_scenario(model, scenario, LIGHT))
    config = FinetuneConfig(scenario=scenario, lr=1e-3)
    data = TrainingData(TileSet.from_pairs(pairs[:1]), model, frozen_encoder=frozen_encoder(scenario))
    batch = torch.utils.data.default_collate([data[0]])
    before = {k: v.clone() for k, v in model.sam.state_dict().items()}
    params = dict(model.sam.named_parameters())
    optimizer = torch.optim.AdamW([p for p in params.values() if p.requires_grad], lr=config.lr)
    net = ClickTrainingModel(model, frozen_encoder(scenario))
    training_step(net, optimizer, batch, 1, np.random.default_rng(0), config)
    after = model.sam.state_dict()
    for name, tensor in before.items():
        changed = not torch.equal(tensor, after[name])
        if name not in trainable:  # frozen parameters and buffers
            assert not changed, name
        elif params[name].grad is not None and params[name].grad.any():
            assert changed, name
        elif params[name].grad is not None and scenario == "enhanced" and name.startswith(
            ("mask_decoder.global_attention.", "mask_decoder.refinement.")
        ):  # behind the enhanced decoder's zero-start layers: no gradient on the first step
            assert not params[name].grad.any(), name
        else:
            assert any(name.startswith(f"{prefix}.") for prefix in UNREACHED), name
    if scenario == "enhanced":  # the additions start at zero and move on the first step
        for name in ("global_attention.out_proj.weight", "refinement.6.weight"):
            assert not torch.equal(before[f"mask_decoder.{name}"], after[f"mask_decoder.{name}"])


def test_a_few_steps_reduce_the_loss_on_a_fixed_set(pairs):
    model = tiny()
    torch.manual_seed(0)  # the enhanced decoder's new layers start from torch's default init
    apply_scenario(model, "enhanced", LIGHT)
    config = FinetuneConfig(scenario="enhanced", lr=1e-3, grad_clip=0)
    data = TrainingData(TileSet.from_pairs(pairs[:2]), model, frozen_encoder=True)
    batch = torch.utils.data.default_collate([data[0], data[1]])
    net = ClickTrainingModel(model, frozen_encoder=True)
    optimizer = torch.optim.AdamW([p for p in model.sam.parameters() if p.requires_grad], lr=config.lr)

    def loss():  # the same clicks every time
        with torch.no_grad():
            logits, iou = net(batch["inputs"], batch["gt"], batch["valid"], 0, np.random.default_rng(7))
        return batch_loss(logits, iou, batch["gt"], batch["valid"], config)[0].item()

    initial = loss()
    for _ in range(3):
        training_step(net, optimizer, batch, 0, np.random.default_rng(7), config)
    assert loss() < 0.95 * initial


def test_normalized_focal_loss_matches_hand_computation():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)), 1 / (1 + math.exp(-3))]
    pt = [p[0], 1 - p[1], 1 - p[2], p[3]]  # probability of the true class
    beta = [(1 - q) ** 2 for q in pt]
    scale = 4 / sum(beta)  # focal weights rescaled to sum to the pixel count
    expected = sum(-0.5 * b * scale * math.log(q) for b, q in zip(beta, pt)) / 4
    assert normalized_focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.83886, abs=1e-4)
    # Invalid pixels count nowhere: dropping one equals computing on the other three.
    valid = torch.tensor([[True, True], [True, False]])
    beta3 = beta[:3]
    expected3 = sum(-0.5 * b * (3 / sum(beta3)) * math.log(q) for b, q in zip(beta3, pt[:3])) / 3
    assert normalized_focal_loss(logits, target, valid).item() == pytest.approx(expected3, rel=1e-5)


def test_losses_are_per_mask_and_small_for_good_predictions():
    target = torch.zeros(2, 3, 16, 16)
    target[..., 4:12, 4:12] = 1
    good, bad = (target * 2 - 1) * 8, -(target * 2 - 1) * 8
    for name, loss in LOSSES.items():
        values = loss(torch.cat([good[:1], bad[1:]]), target)
        assert values.shape == (2, 3), name
        assert (values[0] < 0.05).all() and (values[1] > 0.5).all(), name


def test_training_clicks_follow_ritms_rule():
    gt = np.zeros((64, 64), bool)
    gt[10:40, 10:40] = True
    rng = np.random.default_rng(0)
    firsts = [next_training_click(gt, np.zeros_like(gt), rng) for _ in range(50)]
    assert all(c.is_positive for c in firsts)
    # Boundary distance > half its maximum (15): the inner 16x16 square of the object.
    assert all(17 <= c.y <= 32 and 17 <= c.x <= 32 for c in firsts)
    assert len({(c.y, c.x) for c in firsts}) > 10  # random, not always the centre
    pred = gt.copy()
    pred[45:64, 0:64] = True  # a false positive band wider than any false negative
    pred[10:40, 10:12] = False
    click = next_training_click(gt, pred, rng)
    assert not click.is_positive and click.y >= 45
    assert next_training_click(gt, gt, rng) is None
    valid = np.zeros_like(gt)
    valid[:, :20] = True  # only the left part of the object counts
    assert next_training_click(gt, np.zeros_like(gt), rng, valid).x < 20


def test_low_res_target_follows_sams_resize_and_padding():
    mask = np.zeros((512, 256), np.uint8)
    mask[:256, :128] = 255  # top-left quarter of a tall tile
    gt, valid = low_res_target(mask, 1024)  # tile -> 1024x512 input -> 256x128 of the 256x256 frame
    assert gt.shape == valid.shape == (256, 256)
    assert valid[:, :128].all() and not valid[:, 128:].any()
    assert gt[:128, :64].all() and gt.sum() == 128 * 64


def test_split_keeps_groups_together():
    ids = [f"slide{k}_{i}" for k in range(5) for i in range(4)]
    tiles = TileSet(tuple(ids), tuple(i.split("_")[0] for i in ids), lambda i: None)
    train, val, test = tiles.split(0.3, 0.2, seed=1)
    assert not set(train.groups) & set(val.groups) and not set(test.groups) & (set(train.groups) | set(val.groups))
    assert len(train) + len(val) + len(test) == 20 and len(val) >= 6 and len(test) >= 4
    assert tiles.split(0.3, 0.2, seed=1)[1].ids == val.ids
    assert len(tiles.split(0.3, seed=1)[2]) == 0
    with pytest.raises(ValueError, match="belong to 1 group"):
        TileSet(("a", "b"), ("s", "s"), lambda i: None).split(0.5)
    with pytest.raises(ValueError, match="need 3 groups"):
        TileSet(("a", "b"), ("s", "t"), lambda i: None).split(0.3, 0.3)


def test_dihedral_augmentation_caches_one_embedding_per_variant(pairs, tmp_path):
    model = tiny()
    data = TrainingData(TileSet.from_pairs(pairs[:1]), model, frozen_encoder=True, augment="dihedral", seed=3)
    from histoclick.embeddings import EmbeddingCache

    data.cache = EmbeddingCache(tmp_path)
    variants = set()
    for epoch in range(3):
        data.set_epoch(epoch)
        variants.add(data.variant(0))
        item = data[0]
        assert item["inputs"].shape == (256, 64, 64) and item["gt"].shape == (256, 256)
    assert len(list(tmp_path.glob("*.pt"))) == len(variants) > 1


def test_checkpoint_round_trip_resume_and_base_verification(pairs, tmp_path):
    base_path = save_state_dict(load_model("vit_tiny", device="cpu", seed=3), tmp_path / "base.pth")
    model = load_model(base_path, device="cpu")
    base_identity = model.identity
    config = FinetuneConfig(
        scenario="enhanced", epochs=1, augment="none", max_extra_clicks=0, val_fraction=0, test_fraction=0,
        enhanced=LIGHT,
    )
    run = tmp_path / "run"
    result = finetune(model, TileSet.from_pairs(pairs[:1]), run, config, progress=False)
    content = torch.load(result.best, weights_only=True)
    assert set(content["state_dict"]) == {n for n, p in model.sam.named_parameters() if p.requires_grad}
    assert content["histoclick"]["base"]["sha256"] == hashlib.sha256(base_path.read_bytes()).hexdigest()

    loaded = load_model(result.best, device="cpu")
    assert isinstance(loaded.sam.mask_decoder, EnhancedMaskDecoder) and loaded.identity != base_identity
    # The encoder stayed frozen: embeddings cached for the base serve the fine-tuned model too.
    assert loaded.encoder_identity == result.model.encoder_identity == base_identity
    image = pairs[2][0]
    sessions = [ClickSession(m, image) for m in (result.model, loaded)]
    for x, y, positive in ((60, 64, True), (20, 100, False)):
        a, b = (s.click(x, y, positive) for s in sessions)
        np.testing.assert_array_equal(a.logits, b.logits)
        assert a.predicted_iou == b.predicted_iou

    with open(result.log) as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1"]
    resumed = finetune(
        load_model(base_path, device="cpu"), TileSet.from_pairs(pairs[:1]), run,
        FinetuneConfig(**{**vars(config), "epochs": 2}), resume=result.last, progress=False,
    )
    assert [h["epoch"] for h in resumed.history] == [1, 2] and resumed.history[1]["steps"] == 2
    with pytest.raises(ValueError, match=r"different settings \(lr\): only epochs may change"):
        finetune(load_model(base_path, device="cpu"), TileSet.from_pairs(pairs[:1]), tmp_path / "other",
                 FinetuneConfig(**{**vars(config), "lr": 1.0}), resume=result.last, progress=False)

    # The base is found by digest: a different file in its place is refused, a copy next to
    # the checkpoint is used.
    shutil.copy(base_path, tmp_path / "base-copy.pth")
    save_state_dict(load_model("vit_tiny", device="cpu", seed=4), base_path)
    with pytest.raises(CheckpointError, match="no file with that digest"):
        load_model(result.best, device="cpu")
    shutil.copy(tmp_path / "base-copy.pth", run / "base.pth")
    assert load_model(result.best, device="cpu").sam.mask_decoder.config == config.enhanced
    with pytest.raises(CheckpointError, match="fine-tuned vit_tiny model, but vit_b was asked for"):
        load_model("vit_b", device="cpu", checkpoint=result.best)


def test_cli_trains_and_writes_a_loadable_checkpoint(tmp_path):
    data = write_sample(tmp_path / "data", n=3, size=128)
    parser = argparse.ArgumentParser()
    finetune_cli.register(parser.add_subparsers())
    args = parser.parse_args([
        "finetune", "--data", str(data), "--out", str(tmp_path / "run"), "--base", "vit_tiny",
        "--scenario", "md", "--epochs", "1", "--batch-size", "2", "--augment", "none",
        "--val-fraction", "0.3", "--test-fraction", "0.3", "--max-extra-clicks", "0", "--device", "cpu",
        "--eval-max-clicks", "2", "--val-clicks", "2",
    ])
    assert args.func(args) == 0
    model = load_model(tmp_path / "run" / "best.pt", device="cpu")
    assert model.name == "vit_tiny"
    with open(tmp_path / "run" / "split.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["subset"] for r in rows) == ["test", "train", "val"]
    test_id = next(r["id"] for r in rows if r["subset"] == "test")
    # The NoC evaluation ran on the test tile (not the validation tile that chose best.pt),
    # for the result and its base.
    with open(tmp_path / "run" / "evaluation" / "records.csv") as f:
        records = list(csv.DictReader(f))
    finetuned = load_model(tmp_path / "run" / "best.pt", device="cpu")
    assert {r["method"] for r in records} == {method_name(finetuned, "md"), "sam:vit_tiny@random-seed-0"}
    assert {r["sample"] for r in records} == {test_id} and len(records) == 4


def test_cli_choices_and_defaults_match_the_library():
    parser = argparse.ArgumentParser()
    finetune_cli.register(parser.add_subparsers())
    args = parser.parse_args(["finetune", "--data", "d", "--out", "o"])
    config = FinetuneConfig()
    for option in ("scenario", "batch_size", "lr", "max_extra_clicks", "first_clicks", "loss", "augment", "val_fraction",
                   "test_fraction", "val_clicks", "seed"):
        assert getattr(args, option) == getattr(config, option), option
    for option in ("width", "heads", "attention_dim", "kv_pool", "norm", "activation"):
        assert getattr(args, option) == getattr(config.enhanced, option), option
    assert finetune_cli.SCENARIOS == SCENARIOS and finetune_cli.LOSSES == tuple(LOSSES)
    assert finetune_cli.AUGMENTATIONS == tuple(AUGMENTATIONS) and finetune_cli.FIRST_CLICKS == FIRST_CLICKS
    assert finetune_cli.NORMS == NORMS and finetune_cli.ACTIVATIONS == tuple(ACTIVATIONS)
