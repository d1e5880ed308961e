"""``histoclick demo``: simulated clicks for every method that can run, a NoC table, an overlay PNG
and one QuPath GeoJSON per image, on the synthetic sample or on your own image/mask folders."""

from __future__ import annotations

import argparse
from pathlib import Path

GT_COLOUR = (255, 220, 0)  # ground-truth outline in the overlay PNG


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="compare SAM and the weight-free baselines with simulated clicks",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data", type=Path, default=None,
        help="folder with images/ and masks/ (255 = object); default: a synthetic H&E sample",
    )
    parser.add_argument("--out", type=Path, default=Path("histoclick-demo"), help="output folder")
    parser.add_argument(
        "--model", default="vit_b",
        help="SAM variant (vit_b, vit_l, vit_h, vit_t) or checkpoint path; 'none' runs the baselines only",
    )
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, mps")
    parser.add_argument("--max-clicks", type=int, default=10, help="simulated clicks per sample")
    parser.add_argument("--samples", type=int, default=6, help="samples to evaluate (first N)")
    parser.add_argument("--overlays", type=int, default=3, help="samples drawn in the overlay PNG")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from histoclick.datasets.folders import FolderDataset
    from histoclick.datasets.synthetic import write_sample
    from histoclick.evaluation import GrabCut, RegionGrowing, SamMethod, evaluate

    out: Path = args.out
    data = args.data or write_sample(out / "sample", n=args.samples, size=512, seed=0)
    dataset = FolderDataset(data)
    methods = [RegionGrowing(), GrabCut()]
    sam = _load_sam(args.model, args.device)
    if sam is not None:
        methods.insert(0, SamMethod(sam))

    evaluate(methods, dataset, out / "evaluation", max_clicks=args.max_clicks, limit=args.samples)
    overlay, geojson = _write_pictures(methods, dataset, out, args.max_clicks, args.overlays)
    print(f"records, summary and mIoU plot: {out / 'evaluation'}")
    print(f"overlay: {overlay}")
    print(f"GeoJSON, one file per image (QuPath: File > Import objects on that image): {geojson}")
    return 0


def _load_sam(model: str, device: str):
    """The SAM model, or None with one line saying why and how to supply a checkpoint."""
    from histoclick.models import CheckpointError, load_model

    if model.lower() == "none":
        return None
    try:
        return load_model(model, device=device)
    except (CheckpointError, FileNotFoundError) as err:
        print(f"SAM skipped: {err}")
        return None


def _write_pictures(methods, dataset, out: Path, max_clicks: int, count: int) -> tuple[Path, Path]:
    """Run the click loop again on the first ``count`` samples to draw and export final masks.

    Returns the overlay PNG and the folder of GeoJSON files: ``<sample id>.geojson`` per image,
    each holding that image's final mask of every method, with ids, in the image's pixels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from histoclick.evaluation import run_sample
    from histoclick.files import atomic_path
    from histoclick.geometry import mask_to_geometry
    from histoclick.qupath import Annotation, write_geojson
    from histoclick.slides import Tile
    from histoclick.overlay import render_overlay

    samples = list(dataset.samples(limit=count))
    fig, axes = plt.subplots(
        len(samples), len(methods) + 1, figsize=(3.2 * (len(methods) + 1), 3.4 * len(samples)),
        squeeze=False,
    )
    geojson_dir = out / "geojson"
    geojson_dir.mkdir(parents=True, exist_ok=True)
    for row, sample in zip(axes, samples):
        annotations = []
        tile = Tile.from_array(sample.image)
        gt_outline = [(mask_to_geometry(sample.gt), GT_COLOUR)]
        row[0].imshow(render_overlay(tile, outlines=gt_outline))
        row[0].set_title(f"{sample.id}: ground truth", fontsize=9)
        for ax, method in zip(row[1:], methods):
            result = run_sample(method, sample, max_clicks=max_clicks)
            mask = result.probs > 0.49
            ax.imshow(render_overlay(tile, mask, result.clicks, outlines=gt_outline))
            ax.set_title(
                f"{method.name}: IoU {result.ious[-1]:.2f} after {len(result.clicks)} clicks",
                fontsize=9,
            )
            if mask.any():
                annotations.append(
                    Annotation(
                        mask,
                        classification="Tumor",
                        name=f"{sample.id} {method.name}",
                        measurements={
                            "histoclick clicks": len(result.clicks),
                            "histoclick IoU": float(result.ious[-1]),
                        },
                    )
                )
        if annotations:
            write_geojson(annotations, geojson_dir / f"{sample.id}.geojson", overwrite=True)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    overlay = out / "overlay.png"
    with atomic_path(overlay) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return overlay, geojson_dir
