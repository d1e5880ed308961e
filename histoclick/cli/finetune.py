"""``histoclick finetune``: fine-tune SAM (or train the enhanced decoder) on a folder of tiles.

The folder holds ``images/<id>.(jpg|png|tif)`` and ``masks/<id>.png`` (non-zero = object), like
``camelyon16_mini``. Tiles are split by slide into train, validation (which selects ``best.pt``
with a click loop) and test. Writes ``best.pt``, ``last.pt``, ``log.csv`` and ``split.csv`` to
``--out`` (refusing a folder that holds a run, unless ``--resume`` or ``--overwrite``), then runs
the NoC protocol on the test tiles for the result and its base SAM (``OUT/evaluation``). ``histoclick.load_model(OUT/best.pt)``, ``ClickSession`` and
``histoclick evaluate --methods sam:OUT/best.pt`` use the result. Several GPUs::

    torchrun --nproc_per_node=4 --no-python histoclick finetune --data DIR --out runs/md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from histoclick.cli.data_args import add_dataset_arguments, training_dataset


# Choices and defaults are spelled out so that building the parser does not import torch;
# tests/test_training.py checks them against FinetuneConfig and the library's names.
SCENARIOS = ("md", "ie_md", "whole", "enhanced")
LOSSES = ("nfl", "dice", "bce")
FIRST_CLICKS = ("multipoint", "single")
AUGMENTATIONS = ("none", "dihedral")
NORMS = ("layer", "group", "none")
ACTIVATIONS = ("gelu", "relu", "silu")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune SAM on annotated tiles with simulated clicks",
        description="Fine-tune SAM on annotated tiles, RITM-style: a first click inside the "
        "object, then clicks in the errors of the model's own predictions. Scenarios: md (mask "
        "decoder), ie_md (image encoder + mask decoder), whole (everything), enhanced (the "
        "enhanced mask decoder alone). Under torchrun it trains on all GPUs with DDP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataset_arguments(parser, training=True)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--scenario", choices=SCENARIOS, default="md", help="what is trained")
    parser.add_argument(
        "--base", default="vit_b",
        help="base SAM: vit_b, vit_l, vit_h, vit_t (official; vit_t is MobileSAM), vit_tiny (random, for tests) or a checkpoint path",
    )
    parser.add_argument("--epochs", type=int, help="passes over the tiles (default 10; on --resume: the run's)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per step and process")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak AdamW learning rate (cosine decay)")
    parser.add_argument("--max-extra-clicks", type=int, default=3,
                        help="clicks after the first, drawn in 0..N per batch")
    parser.add_argument("--first-clicks", choices=FIRST_CLICKS, default="multipoint",
                        help="first clicks: RITM's multi-point sampler (positives and negatives) or one positive")
    parser.add_argument("--loss", choices=LOSSES, default="nfl", help="mask loss")
    parser.add_argument("--augment", choices=AUGMENTATIONS, default="dihedral",
                        help="random rotation/flip per tile and epoch, or none")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of tiles held out for validation: checkpoint selection (whole groups)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of tiles held out for the reported test results (whole groups)")
    parser.add_argument("--val-clicks", type=int, default=5,
                        help="clicks per validation tile in the click loop that selects best.pt")
    parser.add_argument("--group-pattern", metavar="REGEX",
                        help="regex whose first group in a tile id names its slide, e.g. '^(.+?)_' "
                        "(default: the part before '@' or '/', else every tile is its own group)")
    parser.add_argument("--seed", type=int, default=0, help="seed of split, clicks, augmentation")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    parser.add_argument("--cache-dir", type=Path, help="embedding cache (default OUT/embeddings)")
    parser.add_argument("--resume", type=Path, metavar="LAST_PT",
                        help="continue a run from its last.pt (its settings and base are reused)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (its best.pt, last.pt and log.csv)")
    enhanced = parser.add_argument_group("enhanced decoder (scenario enhanced)")
    enhanced.add_argument("--width", type=int, default=32, help="channels C of the refinement's conv blocks")
    enhanced.add_argument("--heads", type=int, default=8, help="heads of the global self-attention")
    enhanced.add_argument("--attention-dim", type=int, default=256,
                          help="query/key/value width of the global self-attention")
    enhanced.add_argument("--kv-pool", type=int, default=1,
                          help="average-pool keys and values over NxN image tokens (1: full attention)")
    enhanced.add_argument("--norm", choices=NORMS, default="layer", help="normalisation")
    enhanced.add_argument("--activation", choices=ACTIVATIONS, default="gelu", help="activation")
    parser.add_argument("--no-eval", action="store_true",
                        help="skip the NoC evaluation of the result and its base on the test tiles")
    parser.add_argument("--eval-max-clicks", type=int, default=20, help="clicks per tile in the evaluation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch.distributed as dist

    from histoclick.models.checkpoints import CheckpointError, read_checkpoint
    from histoclick.models.enhanced_decoder import EnhancedDecoderConfig
    from histoclick.models.finetuned import is_finetuned, read_metadata
    from histoclick.models.loading import load_base, load_model
    from histoclick.training.data import TileSet
    from histoclick.training.loop import FinetuneConfig, distributed_device, finetune

    device = distributed_device(args.device)
    if args.resume is not None:
        content = read_checkpoint(args.resume)
        if not is_finetuned(content):
            raise CheckpointError(f"{args.resume} is not a histoclick fine-tuning checkpoint: pass a last.pt")
        meta = read_metadata(args.resume, content)
        config = FinetuneConfig.from_dict(meta.config, args.resume)
        model = load_base(meta.base, args.resume, device)
    else:
        enhanced = EnhancedDecoderConfig(
            width=args.width, heads=args.heads, attention_dim=args.attention_dim, kv_pool=args.kv_pool,
            norm=args.norm, activation=args.activation,
        )
        config = FinetuneConfig(
            scenario=args.scenario, batch_size=args.batch_size, lr=args.lr,
            max_extra_clicks=args.max_extra_clicks, first_clicks=args.first_clicks, loss=args.loss,
            augment=args.augment,
            val_fraction=args.val_fraction, test_fraction=args.test_fraction,
            val_clicks=args.val_clicks, seed=args.seed, enhanced=enhanced,
        )
        model = load_model(args.base, device)
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs)

    tiles = TileSet.from_dataset(training_dataset(args), args.group_pattern)
    try:
        result = finetune(
            model, tiles, args.out, config, resume=args.resume, overwrite=args.overwrite, cache_dir=args.cache_dir
        )
    except (FileExistsError, NotADirectoryError, FloatingPointError) as err:  # a refused folder, a divergence
        print(f"histoclick finetune: error: {err}", file=sys.stderr)
        return 1
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        dist.destroy_process_group()
        if rank != 0:
            return 0
    last = result.history[-1] if result.history else {}
    metrics = ", ".join(
        f"{name.replace('_', ' ')} {last[name]:.4f}"
        for name in ("train_loss", "train_iou", "val_miou", "val_noc85") if last.get(name) is not None
    )
    print(f"trained {config.scenario} on {len(result.train)} tiles ({len(result.val)} validation, "
          f"{len(result.test)} test); last epoch: {metrics or 'none run'}")
    print(f"best checkpoint (epoch {result.best_epoch}, by validation click loop): {result.best}\n"
          f"resumable: {result.last}\nlog: {result.log}")
    if not args.no_eval and len(result.test):
        _evaluate(result.best, args, result.test.ids)
    return 0


def _evaluate(checkpoint: Path, args: argparse.Namespace, test_ids: tuple[str, ...]) -> None:
    """NoC evaluation of the best checkpoint and of its base SAM on the test tiles (never the
    validation tiles that chose it), with the evaluation runner (``OUT/evaluation``, resumable)."""
    from histoclick.evaluation import SamMethod, Subset, evaluate
    from histoclick.evaluation.naming import method_name
    from histoclick.models.checkpoints import read_checkpoint
    from histoclick.models.loading import load_base, load_model

    cache_dir = args.cache_dir or args.out / "embeddings"
    meta = read_checkpoint(checkpoint)["histoclick"]
    finetuned = load_model(checkpoint, device=args.device)
    base = load_base(meta["base"], checkpoint, finetuned.device)
    methods = [
        # Named as everywhere (histoclick.evaluation.naming): sam:vit_b+md@1a2b3c4d, sam:vit_b@ec2df627.
        SamMethod(finetuned, name=method_name(finetuned, meta["scenario"]), cache_dir=cache_dir),
        SamMethod(base, cache_dir=cache_dir),
    ]
    folder = training_dataset(args)
    held_out = Subset(folder, test_ids, name=f"{folder.name}-test")
    evaluate(methods, held_out, args.out / "evaluation", max_clicks=args.eval_max_clicks)
