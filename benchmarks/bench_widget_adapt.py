"""The click widget with "Adapt to my annotations" on: a click while idle and while a refit runs.

Prints one JSON object. vit_tiny (random weights; SAM's full-size mask decoder) on the synthetic
pyramidal slide, the default :class:`~histoclick.adaptation.AdaptConfig`, background refits:

    python benchmarks/bench_widget_adapt.py --device cpu --accepts 6

``click_seconds``: :meth:`ClickWidget.click` (decoder, overlay, PNG, status line), median of
``--clicks`` clicks of a growing sequence, ``--pause`` seconds apart as a user clicks; ``idle``
with no refit running, ``during_refit`` while the adapter's worker process refits after an Accept.
``accept_seconds``: Accept (saving the GeoJSON, handing the pair over), median.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from histoclick.datasets.synthetic import write_pyramidal_slide
from histoclick.models import load_model
from histoclick.widgets import ClickWidget
from widget_clicks import tissue_points, timed_clicks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--accepts", type=int, default=6)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench_widget_adapt_"))
    write_pyramidal_slide(
        folder / "slide.tif", width=2048, height=1536, downsamples=(1, 4, 16), objective_power=40.0, mpp=0.25, seed=0
    )
    model = load_model("vit_tiny", device=args.device, seed=0)
    widget = ClickWidget(
        folder / "slide.tif", model, geojson=folder / "objects.geojson", magnification=10, origin=(0, 0),
        size=args.size, cache_dir=folder / "embeddings",
    )
    widget.set_adapt(True)
    points = tissue_points(widget, args.clicks)

    def clicks() -> list[float]:
        return timed_clicks(widget, points, args.pause)

    idle, during, accepts, refits = [], [], [], []
    for _ in range(args.accepts):
        widget.adapter.wait()
        idle += clicks()
        started = time.perf_counter()
        widget.accept()
        accepts.append(time.perf_counter() - started)
        during += clicks() if widget.adapter.status.running else []
        widget.adapter.wait()
        refits.append(widget.adapter.status.last_refit_seconds)
    status = widget.adapter.status
    widget.close()
    print(json.dumps({
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "tile": args.size,
        "click_seconds": {
            "idle": statistics.median(idle),
            "during_refit": statistics.median(during) if during else None,
            "clicks_during_refit": len(during),
        },
        "slowdown": statistics.median(during) / statistics.median(idle) if during else None,
        "accept_seconds": statistics.median(accepts),
        "refit_seconds": refits,
        "status": status.line(),
    }, indent=2))


if __name__ == "__main__":
    main()
