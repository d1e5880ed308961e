"""Training fidelity on the tiny SAM: the checkpoint format without an import cycle, runs that
diverge or would overwrite another run, damaged checkpoints, eval mode, identities after
training, and checkpoint selection on a validation click loop with a separate test split."""

import argparse
import ast
import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from histoclick import ClickSession, load_model
from histoclick.cli import finetune as finetune_cli
from histoclick.datasets.folders import FolderDataset
from histoclick.datasets.synthetic import make_tile, write_sample
from histoclick.evaluation import Sample, SamMethod, miou_curve, run_sample
from histoclick.models import CheckpointError, EnhancedDecoderConfig
from histoclick.models.finetuned import base_reference, save_checkpoint
from histoclick.training import FinetuneConfig, TileSet, apply_scenario, finetune

REPO = Path(__file__).resolve().parents[1]
LIGHT = EnhancedDecoderConfig(width=8, heads=2, attention_dim=32, kv_pool=2)  # fast on CPUs
QUICK = dict(epochs=1, batch_size=1, augment="none", max_extra_clicks=0, val_fraction=0, test_fraction=0)


@pytest.fixture(scope="module")
def pairs():
    return [make_tile(seed, 96) for seed in range(6)]


def tiny(seed=1):
    return load_model("vit_tiny", device="cpu", seed=seed)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def md_run(pairs, tmp_path_factory):
    """One quick md run: its folder and result."""
    out = tmp_path_factory.mktemp("md") / "run"
    return finetune(tiny(), TileSet.from_pairs(pairs[:1]), out, FinetuneConfig(scenario="md", **QUICK), progress=False)


def test_models_never_import_training(md_run):
    for path in (REPO / "histoclick" / "models").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            modules += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            assert not any("training" in m for m in modules), f"{path.name} imports {modules}"
    # Loading a fine-tuned checkpoint, in a fresh process, imports nothing of training.
    code = (
        "import sys; from histoclick import load_model; "
        f"load_model({str(md_run.best)!r}, device='cpu'); "
        "print(sorted(m for m in sys.modules if m.startswith('histoclick.training')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_divergence_stops_with_a_clear_error_and_writes_no_weights(pairs, tmp_path):
    out = tmp_path / "run"
    config = FinetuneConfig(scenario="md", lr=1e6, grad_clip=0, **{**QUICK, "epochs": 2})
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 2: the loss is nan .* no checkpoint was written"):
        finetune(tiny(), TileSet.from_pairs(pairs[:2]), out, config, progress=False)
    assert not (out / "best.pt").exists() and not (out / "last.pt").exists()
    # Weights that are already broken are never written either.
    model = tiny()
    names = apply_scenario(model, "md")
    with torch.no_grad():
        model.sam.mask_decoder.iou_token.weight[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="hold NaN or infinity .*iou_token"):
        save_checkpoint(tmp_path / "x.pt", model, base=base_reference(tiny()), scenario="md",
                        trainable=names, config={}, epoch=1)
    assert not (tmp_path / "x.pt").exists()


def test_cli_reports_divergence_instead_of_a_checkpoint_path(tmp_path, capsys):
    data = write_sample(tmp_path / "data", n=2, size=96)
    code = run_cli(data, tmp_path / "run", "--lr", "1e6", "--val-fraction", "0", "--test-fraction", "0")
    err = capsys.readouterr()
    assert code == 1 and "the loss is nan" in err.err and "best checkpoint" not in err.out
    assert not (tmp_path / "run" / "best.pt").exists()


def run_cli(data, out, *extra):
    parser = argparse.ArgumentParser()
    finetune_cli.register(parser.add_subparsers())
    args = parser.parse_args([
        "finetune", "--data", str(data), "--out", str(out), "--base", "vit_tiny", "--scenario", "md",
        "--epochs", "1", "--batch-size", "1", "--augment", "none", "--max-extra-clicks", "0",
        "--device", "cpu", "--no-eval", *extra,
    ])
    return args.func(args)


def test_an_existing_run_is_never_replaced_silently(pairs, md_run, tmp_path, capsys):
    before = digests(md_run.best.parent)
    with pytest.raises(FileExistsError, match=r"already holds a training run \(best.pt, last.pt, log.csv\).*--overwrite"):
        finetune(tiny(), TileSet.from_pairs(pairs[:1]), md_run.best.parent, FinetuneConfig(scenario="md", **QUICK), progress=False)
    assert digests(md_run.best.parent) == before
    # The CLI says the same, and leaves the files alone.
    data = write_sample(tmp_path / "data", n=1, size=96)
    code = run_cli(data, md_run.best.parent, "--val-fraction", "0", "--test-fraction", "0")
    assert code == 1 and "--resume" in capsys.readouterr().err
    assert digests(md_run.best.parent) == before
    # An output "folder" that is a file is refused by name.
    (tmp_path / "file").write_text("x")
    assert run_cli(data, tmp_path / "file", "--val-fraction", "0", "--test-fraction", "0") == 1
    assert "is a file" in capsys.readouterr().err and (tmp_path / "file").read_text() == "x"
    # --overwrite replaces it on purpose.
    out = tmp_path / "copy"
    out.mkdir()
    for name in ("best.pt", "last.pt", "log.csv"):
        (out / name).write_bytes((md_run.best.parent / name).read_bytes())
    assert run_cli(data, out, "--val-fraction", "0", "--test-fraction", "0", "--overwrite", "--seed", "3") == 0
    assert torch.load(out / "last.pt", weights_only=True)["histoclick"]["config"]["seed"] == 3


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda c: c.__setitem__("histoclick", "oops"), "its 'histoclick' entry is a str"),
        (lambda c: c["histoclick"].pop("base"), "base model reference"),
        (lambda c: c["histoclick"]["base"].__setitem__("identity", 3), "base model reference"),
        (lambda c: c["histoclick"].__setitem__("trainable", "mask_decoder"), "list of trained tensors"),
        (lambda c: c.__setitem__("state_dict", [1, 2]), "'state_dict' is missing"),
        (lambda c: c["histoclick"].__setitem__("enhanced", {"width": 3, "colour": 1}), "enhanced decoder settings"),
        (lambda c: c["histoclick"].__setitem__("epoch", "one"), "epoch count"),
    ],
)
def test_damaged_checkpoint_metadata_gives_an_error_naming_the_file(md_run, tmp_path, damage, message):
    content = torch.load(md_run.best, weights_only=True)
    damage(content)
    path = tmp_path / "damaged.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=f"{path}.*{message}"):
        load_model(path, device="cpu")


def test_bad_group_pattern_is_a_clear_error(tmp_path, capsys):
    data = write_sample(tmp_path / "data", n=2, size=64)
    with pytest.raises(ValueError, match=r"group pattern '\(\[' is not a valid regular expression"):
        TileSet.from_dataset(FolderDataset(data), "([")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        run_cli(data, tmp_path / "run", "--group-pattern", "([")


def decoder_calls(model):
    """(training flag of every mask-decoder module, grad enabled) at each decoder call."""
    calls = []

    def hook(module, args):
        calls.append((tuple(m.training for m in module.modules()), torch.is_grad_enabled()))

    return calls, model.sam.mask_decoder.register_forward_pre_hook(hook)


def test_training_mode_only_for_trained_passes_eval_everywhere_else(pairs, tmp_path):
    model = tiny()
    apply_scenario(model, "enhanced", LIGHT)  # a new module starts in training mode unless told
    assert not any(m.training for m in model.sam.modules())
    calls, handle = decoder_calls(model)
    config = FinetuneConfig(scenario="enhanced", enhanced=LIGHT,
                            **{**QUICK, "max_extra_clicks": 1, "val_fraction": 0.3, "val_clicks": 2})
    tiles = TileSet.from_pairs(pairs[:3])
    result = finetune(model, tiles, tmp_path / "run", config, progress=False)
    handle.remove()
    trained = [flags for flags, grad in calls if grad]
    others = [flags for flags, grad in calls if not grad]  # simulated clicks (RITM: eval) and validation
    assert trained and others
    assert all(all(flags) for flags in trained) and not any(any(flags) for flags in others)
    assert not any(m.training for m in result.model.sam.modules())
    assert not any(m.training for m in load_model(result.best, device="cpu").sam.modules())


@pytest.mark.parametrize("scenario", ["ie_md", "md"])
def test_trained_encoder_gets_a_new_identity_and_no_stale_embeddings(pairs, tmp_path, scenario):
    model = tiny()
    image = pairs[5][0]
    before = ClickSession(model, image).embedding.features.clone()  # cached in process memory
    base_identity, base_encoder = model.identity, model.encoder_identity
    config = FinetuneConfig(scenario=scenario, lr=1e-2, **QUICK)
    result = finetune(model, TileSet.from_pairs(pairs[:1]), tmp_path / "run", config, progress=False)
    assert result.model is model and model.identity != base_identity
    after = ClickSession(model, image).embedding.features
    if scenario == "ie_md":
        assert model.encoder_identity not in (base_encoder, base_identity)
        assert not torch.equal(after, before)
        torch.testing.assert_close(after, model.embed(image).features)
    else:  # a frozen encoder keeps sharing the base's embeddings
        assert model.encoder_identity == base_encoder and torch.equal(after, before)


def test_best_checkpoint_is_chosen_on_a_validation_click_loop_and_test_is_separate(tmp_path):
    tiles = []
    for slide, k in ((0, 0), (0, 1), (1, 0), (2, 0)):
        image, mask = make_tile(10 * slide + k, 96)
        tiles.append((f"slide{slide}@{k * 96},0", image, mask))
    table = {tile_id: (image, mask) for tile_id, image, mask in tiles}

    class Slides:  # a dataset whose ids name the slide, as CAMELYON16's and PAIP's do
        name = "slides"
        sample_ids = list(table)

        def load(self, tile_id):
            return Sample(tile_id, *table[tile_id])

    tile_set = TileSet.from_dataset(Slides())
    assert set(tile_set.groups) == {f"slide{s}" for s in range(3)}
    config = FinetuneConfig(scenario="md", epochs=2, batch_size=2, augment="none", max_extra_clicks=1,
                            lr=3e-3, val_fraction=0.25, test_fraction=0.25, val_clicks=3)
    result = finetune(tiny(), tile_set, tmp_path / "run", config, progress=False)
    subsets = [set(result.train.groups), set(result.val.groups), set(result.test.groups)]
    assert all(subsets) and not (subsets[0] & subsets[1] or subsets[0] & subsets[2] or subsets[1] & subsets[2])
    scores = [row["val_miou"] for row in result.history]
    assert result.best_epoch == 1 + int(np.argmax(scores))
    best = torch.load(result.best, weights_only=True)["histoclick"]
    assert best["epoch"] == result.best_epoch
    # The logged score is the evaluation protocol's own mIoU of best.pt on the validation tiles.
    method = SamMethod(load_model(result.best, device="cpu"))
    curves = [run_sample(method, Sample(i, *table[i]), max_clicks=3).ious for i in result.val.ids]
    assert miou_curve(curves, 3).mean() == pytest.approx(max(scores), abs=1e-6)
    with open(result.best.parent / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["id"], r["subset"]) for r in rows} == {
        *((i, "train") for i in result.train.ids), *((i, "val") for i in result.val.ids),
        *((i, "test") for i in result.test.ids),
    }
