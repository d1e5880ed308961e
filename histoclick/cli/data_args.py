"""Dataset arguments shared by ``histoclick evaluate`` and ``histoclick finetune``.

Folders of tiles (``--data``), CAMELYON16 slides with ASAP XML (``--camelyon16 SLIDES XMLS``, x10)
and PAIP 2019 slides (``--paip DIR``, x5). Evaluation reads slides with the region-level
protocol by default (``--slide-protocol``) and may split tiles into objects (``--objects``);
training reads slides with the study's tiles protocol, whose masks label every tumour pixel
(training has no ignored pixels).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Spelled out so that building the parser imports nothing heavy; tests/test_datasets_cli.py
# checks them against histoclick.datasets.objects.OBJECT_MODES and slide_tiles.SLIDE_PROTOCOLS.
OBJECT_MODES = ("mask", "components", "instances")
SLIDE_PROTOCOLS = ("regions", "tiles")
AREA_UNITS = ("px", "um2")
PAIP_LAYERS = ("whole", "viable")
PAIP_SOURCES = ("xml", "mask")


def add_dataset_arguments(parser: argparse.ArgumentParser, *, training: bool) -> None:
    """Add the dataset options: several datasets for evaluation, exactly one for training."""
    data = parser.add_argument_group("datasets (exactly one)" if training else "datasets (at least one)")
    if training:
        data.add_argument("--data", type=Path, metavar="DIR",
                          help="folder with images/ and masks/<same stem>.png (non-zero = object)")
    else:
        data.add_argument("--data", type=Path, nargs="+", default=[], metavar="DIR",
                          help="folders with images/ and masks/<same stem>.png (non-zero = object; "
                          "labels 1..n for --objects instances)")
    data.add_argument("--camelyon16", type=Path, nargs=2, metavar=("SLIDES", "ANNOTATIONS"),
                      help="CAMELYON16 slides folder and ASAP XML folder (tiles at x10)")
    data.add_argument("--paip", type=Path, metavar="DIR",
                      help="PAIP 2019 folder: <id>.svs with <id>.xml or <id>_whole/_viable.tif (x5)")
    data.add_argument("--paip-layer", choices=PAIP_LAYERS, default="whole", help="PAIP tumour layer")
    data.add_argument("--paip-source", choices=PAIP_SOURCES, default="xml",
                      help="PAIP annotations: ImageScope XML or the mask TIFFs")
    data.add_argument("--no-paip-check", action="store_true",
                      help="do not compare PAIP XML layers with the mask TIFFs where both exist")
    data.add_argument("--tile-size", type=int, default=512, help="slide tile side in pixels")
    data.add_argument("--tiles-per-slide", type=int, default=None,
                      help="largest tumour regions kept per slide")
    if training:
        return
    data.add_argument("--slide-protocol", choices=SLIDE_PROTOCOLS, default="regions",
                      help="slides: one target region per sample, other tumour ignored, tiles on "
                      "the boundary of large regions (regions); or the study's tumour-centred "
                      "tiles with every tumour pixel as the object (tiles)")
    data.add_argument("--objects", choices=OBJECT_MODES, default="mask",
                      help="what one sample is: the tile's whole mask (the study's), each connected "
                      "component, or each label of an instance mask; other objects are ignored")
    data.add_argument("--min-object-area", type=float, default=0.0,
                      help="components/instances smaller than this are not samples (see --area-unit)")
    data.add_argument("--area-unit", choices=AREA_UNITS, default="px",
                      help="unit of --min-object-area: tile pixels or square micrometres")


def evaluation_datasets(args: argparse.Namespace) -> list:
    """The evaluation datasets the options name, split into objects as ``--objects`` says."""
    from histoclick.datasets.objects import objects

    datasets = [_folder(path) for path in args.data] + _slide_datasets(args, args.slide_protocol)
    if not datasets:
        raise ValueError(
            "give at least one dataset: --data DIR, --camelyon16 SLIDES ANNOTATIONS or --paip DIR"
        )
    return [
        objects(dataset, args.objects, min_area=args.min_object_area, area_unit=args.area_unit)
        for dataset in datasets
    ]


def training_dataset(args: argparse.Namespace):
    """The one training dataset the options name (slides in the tiles protocol)."""
    datasets = ([_folder(args.data)] if args.data else []) + _slide_datasets(args, "tiles")
    if len(datasets) != 1:
        raise ValueError(
            f"finetune trains on exactly one dataset, got {len(datasets)}: give one of --data DIR, "
            "--camelyon16 SLIDES ANNOTATIONS or --paip DIR"
        )
    return datasets[0]


def _folder(path: Path):
    from histoclick.datasets.folders import FolderDataset

    return FolderDataset(path)


def _slide_datasets(args: argparse.Namespace, protocol: str) -> list:
    tiles = {"tile_size": args.tile_size, "tiles_per_slide": args.tiles_per_slide, "protocol": protocol}
    datasets = []
    if args.camelyon16:
        from histoclick.datasets.camelyon16 import Camelyon16Dataset

        datasets.append(Camelyon16Dataset(*args.camelyon16, **tiles))
    if args.paip:
        from histoclick.datasets.paip import PaipDataset

        datasets.append(PaipDataset(
            args.paip, layer=args.paip_layer, source=args.paip_source,
            check_layers=not args.no_paip_check, **tiles,
        ))
    for dataset in datasets:
        if dataset.dropped:
            print(f"{dataset.name}: {len(dataset.dropped)} slides not used (reasons logged; "
                  f"e.g. {next(iter(dataset.dropped.values()))})", file=sys.stderr)
    return datasets
