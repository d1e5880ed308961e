"""``histoclick checkpoints``: list, download and verify the official SAM checkpoints."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "checkpoints",
        help="list, download and verify official SAM checkpoints",
        description="Official SAM checkpoints live in $HISTOCLICK_CHECKPOINT_DIR "
        "(default ~/.cache/histoclick/checkpoints) and are verified by SHA-256 before use.",
    )
    parser.add_argument(
        "--download", nargs="+", default=[], metavar="VARIANT", choices=["vit_b", "vit_l", "vit_h"],
        help="download (once) and verify these variants: vit_b, vit_l, vit_h",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from histoclick.models import OFFICIAL_CHECKPOINTS, checkpoint_dir, official_checkpoint

    for variant in args.download:
        print(f"{variant}: {official_checkpoint(variant)} (SHA-256 verified)")
    directory = checkpoint_dir()
    print(f"checkpoint directory: {directory}")
    for official in OFFICIAL_CHECKPOINTS.values():
        state = "present" if (directory / official.filename).exists() else "missing"
        print(f"  {official.variant:6} {official.filename:22} {state:8} {official.url}")
    return 0
