"""``histoclick checkpoints``: list, download and verify the official SAM checkpoints."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "checkpoints",
        help="list, download and verify official SAM checkpoints",
        description="Official SAM checkpoints live in $HISTOCLICK_CHECKPOINT_DIR "
        "(default ~/.cache/histoclick/checkpoints) and are verified by SHA-256 before use. "
        "Each file is listed as verified, damaged (partial or corrupt) or missing.",
    )
    parser.add_argument(
        "--download", nargs="+", default=[], metavar="VARIANT", choices=["vit_b", "vit_l", "vit_h", "vit_t"],
        help="download (once) and verify these variants: vit_b, vit_l, vit_h (SAM), vit_t (MobileSAM)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from histoclick.models import OFFICIAL_CHECKPOINTS, checkpoint_dir, official_checkpoint, sha256_of

    for variant in args.download:
        print(f"{variant}: {official_checkpoint(variant)} (SHA-256 verified)")
    directory = checkpoint_dir()
    print(f"checkpoint directory: {directory}")
    for official in OFFICIAL_CHECKPOINTS.values():
        path = directory / official.filename
        if not path.is_file():
            state = "missing"
        elif sha256_of(path) == official.sha256:
            state = "verified"
        else:  # a partial copy or download, or a damaged file: it would be refused when loaded
            state = "damaged"
        print(f"  {official.variant:6} {official.filename:22} {state:8} {official.url}")
        if state == "damaged":
            print(
                f"         {path} ({path.stat().st_size:,} bytes) does not match the published "
                f"SHA-256: delete it and run `histoclick checkpoints --download {official.variant}`"
            )
    return 0
