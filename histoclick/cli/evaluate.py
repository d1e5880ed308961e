"""``histoclick evaluate``: the RITM / FocalClick / SimpleClick click protocol for several methods
on several datasets; prints the NoC / NoF / SPC table and writes per-click records (resumable),
the summary CSV and the mIoU-vs-clicks plot."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="NoC/NoF/SPC of SAM and the baselines with simulated clicks (resumable)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("datasets (at least one)")
    data.add_argument(
        "--data", type=Path, nargs="+", default=[], metavar="DIR",
        help="folders with images/ and masks/<same stem>.png (non-zero = object)",
    )
    data.add_argument(
        "--camelyon16", type=Path, nargs=2, metavar=("SLIDES", "ANNOTATIONS"),
        help="CAMELYON16 slides folder and ASAP XML folder (tiles at x10)",
    )
    data.add_argument(
        "--paip", type=Path, metavar="DIR",
        help="PAIP 2019 folder: <id>.svs with <id>.xml (tiles at x5)",
    )
    data.add_argument("--tile-size", type=int, default=512, help="slide tile side in pixels")
    data.add_argument(
        "--tiles-per-slide", type=int, default=None, help="largest tumour regions kept per slide"
    )
    parser.add_argument(
        "--methods", nargs="+", default=["region_growing", "grabcut"], metavar="NAME",
        help="region_growing, grabcut, sam:vit_b, sam:vit_l, sam:vit_h, sam:vit_tiny, sam:PATH",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (resumed if present)")
    parser.add_argument("--max-clicks", type=int, default=20, help="simulated clicks per sample")
    parser.add_argument(
        "--target-iou", type=float, default=None,
        help="stop a sample once its IoU reaches this (default: always run --max-clicks)",
    )
    parser.add_argument("--limit", type=int, default=None, help="first N samples of each dataset")
    parser.add_argument("--device", default="auto", help="torch device for SAM: auto, cpu, cuda, mps")
    parser.add_argument("--cache-dir", type=Path, default=None, help="SAM embedding cache folder")
    parser.add_argument("--no-plot", action="store_true", help="skip the mIoU PNG")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from histoclick.evaluation import evaluate, make_method

    datasets = _datasets(args)
    if not datasets:
        raise ValueError(
            "give at least one dataset: --data DIR, --camelyon16 SLIDES ANNOTATIONS or --paip DIR"
        )
    methods = [make_method(spec, device=args.device, cache_dir=args.cache_dir) for spec in args.methods]
    evaluate(
        methods,
        datasets,
        args.out,
        max_clicks=args.max_clicks,
        target_iou=args.target_iou,
        limit=args.limit,
        plot=not args.no_plot,
    )
    print(f"per-click records: {args.out / 'records.csv'}")
    print(f"summary: {args.out / 'summary.csv'}")
    if not args.no_plot:
        print(f"mIoU plot: {args.out / 'miou.png'}")
    return 0


def _datasets(args: argparse.Namespace) -> list:
    from histoclick.datasets.folders import FolderDataset

    datasets = [FolderDataset(path) for path in args.data]
    tiles = {"tile_size": args.tile_size, "tiles_per_slide": args.tiles_per_slide}
    if args.camelyon16:
        from histoclick.datasets.camelyon16 import Camelyon16Dataset

        datasets.append(Camelyon16Dataset(*args.camelyon16, **tiles))
    if args.paip:
        from histoclick.datasets.paip import PaipDataset

        datasets.append(PaipDataset(args.paip, **tiles))
    return datasets
