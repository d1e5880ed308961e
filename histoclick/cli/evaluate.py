"""``histoclick evaluate``: the RITM / FocalClick / SimpleClick click protocol for several methods
on several datasets; prints the NoC / NoF / SPC table and writes per-click records (resumable),
the summary CSV and the mIoU-vs-clicks plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from histoclick.cli.data_args import add_dataset_arguments, evaluation_datasets


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="NoC/NoF/SPC of SAM and the baselines with simulated clicks (resumable)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataset_arguments(parser, training=False)
    parser.add_argument(
        "--methods", nargs="+", default=["region_growing", "grabcut"], metavar="NAME",
        help="region_growing, grabcut, sam:vit_b, sam:vit_l, sam:vit_h, sam:vit_t, sam:vit_tiny, sam:PATH, "
        "and the study's peers ritm:CKPT, focalclick:CKPT, simpleclick:CKPT (with --isegm-root)",
    )
    parser.add_argument(
        "--isegm-root", nargs="+", default=None, metavar="[PROJECT=]DIR",
        help="for ritm:/focalclick:/simpleclick: a checkout of the project (the folder holding "
        "isegm/), or one per project: ritm=DIR focalclick=DIR simpleclick=DIR; default "
        "$HISTOCLICK_<PROJECT>_ROOT, then $HISTOCLICK_ISEGM_ROOT",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (resumed if present)")
    parser.add_argument("--max-clicks", type=int, default=20, help="simulated clicks per sample")
    parser.add_argument(
        "--target-iou", type=float, default=None,
        help="stop a sample once its IoU reaches this (default: always run --max-clicks)",
    )
    parser.add_argument("--limit", type=int, default=None, help="first N samples of each dataset")
    parser.add_argument(
        "--boundary-um", type=float, default=5.0,
        help="boundary F-score tolerance in micrometres (needs the samples' mpp)",
    )
    parser.add_argument("--device", default="auto", help="torch device for SAM: auto, cpu, cuda, mps")
    parser.add_argument("--cache-dir", type=Path, default=None, help="SAM embedding cache folder")
    parser.add_argument("--no-plot", action="store_true", help="skip the mIoU PNG")
    parser.add_argument(
        "--adapt", choices=("md", "enhanced"), default=None,
        help="online adaptation: annotate in order, refit the decoder after each sample, and "
        "compare NoC with the static model (one sam: method; see histoclick.adaptation.protocol)",
    )
    parser.add_argument("--adapt-seed", type=int, default=0, help="seed of the online adaptation")
    parser.add_argument("--adapt-steps", type=int, default=20, help="optimizer steps per refit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from histoclick.evaluation import evaluate, make_method

    datasets = evaluation_datasets(args)
    if args.adapt:
        from histoclick.adaptation.protocol import run_from_args

        return run_from_args(args, datasets)
    roots = _isegm_roots(args.isegm_root)
    methods = [
        make_method(spec, device=args.device, cache_dir=args.cache_dir, isegm_root=roots)
        for spec in args.methods
    ]
    evaluate(
        methods,
        datasets,
        args.out,
        max_clicks=args.max_clicks,
        target_iou=args.target_iou,
        limit=args.limit,
        boundary_um=args.boundary_um,
        plot=not args.no_plot,
    )
    print(f"per-click records: {args.out / 'records.csv'}")
    print(f"summary: {args.out / 'summary.csv'}")
    if not args.no_plot:
        print(f"mIoU plot: {args.out / 'miou.png'}")
    return 0


def _isegm_roots(values: list[str] | None) -> dict[str, str] | str | None:
    """``--isegm-root``: one DIR for every peer, or ``PROJECT=DIR`` entries."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    roots = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep:
            raise ValueError(
                f"--isegm-root {' '.join(values)}: give one DIR, or PROJECT=DIR for each project "
                "(ritm=DIR focalclick=DIR simpleclick=DIR)"
            )
        roots[name] = folder
    return roots
