"""The ``histoclick`` command line: one sub-command per module of this package."""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, each with register(subparsers) and run(args) -> int. They are imported
# only to build the parser; heavy imports (torch, paquo) happen inside their run().
COMMANDS = ("demo", "evaluate", "qupath", "checkpoints", "finetune")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="histoclick",
        description="Click-to-segment histopathology slides with the Segment Anything Model.",
    )
    from histoclick import __version__

    parser.add_argument("--version", action="version", version=f"histoclick {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"histoclick.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:
        # Errors that name the problem and the fix need no traceback.
        print(f"histoclick {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
