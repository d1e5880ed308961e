"""The click widget's background embeddings: a cold viewport, a pan to a prefetched viewport (vs a
pan back to a cached one), a click while idle and while a nearby embedding is computed, an Accept.

Prints one JSON object. SAM-sized random weights (``--variant vit_b``, no checkpoint needed) on
the synthetic pyramidal slide, a 1024-pixel viewport, an embedding cache folder:

    python benchmarks/bench_widget_prefetch.py --variant vit_b --device cpu

``show_returns_seconds``: opening the widget on a cold viewport, until the kernel is free again
(the tile drawn, the embedding started in the background); ``cold_ready_seconds``: until the
embedding is ready (what the kernel used to be blocked for). ``pan_seconds``: ``pan()`` until the
viewport's session is ready, to a ``prefetched`` neighbour and back to a ``cached`` one (the
reference: shown before). ``click_seconds``: :meth:`ClickWidget.click` (decoder, overlay, PNG,
status line), median of ``--clicks``; ``idle`` with no background work, ``during_prefetch``
while a nearby viewport's embedding is computed. ``accept_seconds``: click + Accept, median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from histoclick.datasets.synthetic import write_pyramidal_slide
from histoclick.models import VARIANTS, SamModel, build_sam, resolve_device
from histoclick.widgets import ClickWidget
from widget_clicks import tissue_points, timed_clicks

SIZE = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vit_b", choices=sorted(VARIANTS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between clicks")
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = SamModel(build_sam(VARIANTS[args.variant]), args.variant, device, "random weights", "bench")
    folder = Path(tempfile.mkdtemp(prefix="bench_widget_prefetch_"))
    slide = folder / "slide.tif"
    write_pyramidal_slide(slide, width=4096, height=3072, downsamples=(1, 4, 16), seed=0)

    started = time.perf_counter()
    widget = ClickWidget(
        slide, model, geojson=folder / "objects.geojson", downsample=2, origin=(0, 0), size=SIZE,
        cache_dir=folder / "embeddings",
    )
    show_returns = time.perf_counter() - started
    assert widget.method.session is not None  # waits for the embedding
    cold_ready = time.perf_counter() - started
    prefetcher = widget.prefetcher

    points = tissue_points(widget, args.clicks)

    def clicks() -> list[float]:
        return timed_clicks(widget, points, args.pause)

    # The nearby thread starts on the right neighbour as soon as the shown viewport is ready.
    during = clicks() if prefetcher.status.prefetched == 0 else []
    while prefetcher.status.prefetched == 0:  # the right neighbour, first in line
        time.sleep(0.05)
    prefetcher.schedule([])  # drop the rest: nothing in the background from here on
    prefetcher.wait()
    idle = clicks()
    accepts = []
    for row, column in points[:3]:
        widget.reset()
        begin = time.perf_counter()
        widget.click(int(column), int(row))
        widget.accept()
        accepts.append(time.perf_counter() - begin)
        widget.finish()

    def pan(side: str) -> float:
        begin = time.perf_counter()
        widget.pan(side)
        assert widget.method.session is not None  # at once when cached
        seconds = time.perf_counter() - begin
        prefetcher.schedule([])
        prefetcher.wait()
        return seconds

    prefetched = pan("right")
    cached = pan("left")
    widget.close()
    print(json.dumps({
        "variant": args.variant,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "viewport": SIZE,
        "show_returns_seconds": show_returns,
        "cold_ready_seconds": cold_ready,
        "pan_seconds": {"prefetched": prefetched, "cached": cached, "ratio": prefetched / cached},
        "click_seconds": {
            "idle": statistics.median(idle),
            "during_prefetch": statistics.median(during) if during else None,
            "ratio": statistics.median(during) / statistics.median(idle) if during else None,
        },
        "accept_seconds": statistics.median(accepts),
    }, indent=2))


if __name__ == "__main__":
    main()
