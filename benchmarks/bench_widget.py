"""Where the ClickWidget's Accept spends its time, on a 1024 x 1024 viewport.

The method is a stand-in with no model time, so only the widget's own work is measured: it
answers every click with the tile's tissue (darker than the background), a mask with a long,
ragged outline (the case that made Accept take seconds). Accept's parts are timed one by one
on the same mask (tracing the outline, cutting it to the slide, writing the GeoJSON file,
re-reading it for the object list, redrawing), then whole, exact and simplified within half a
tile pixel (the default). Prints one JSON object (seconds: median over the repeats):

    python benchmarks/bench_widget.py --repeats 5
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

import numpy as np
import shapely

from histoclick.clicks import Click
from histoclick.datasets.synthetic import write_pyramidal_slide
from histoclick.evaluation.protocol import Prediction
from histoclick.qupath import read_geojson
from histoclick.widgets import ClickWidget

SIZE = 1024


class TissueMethod:
    """Answers every click with the tissue of the tile (no model time)."""

    name = "tissue"

    def set_image(self, image: np.ndarray) -> None:
        self._probs = (image.mean(axis=2) < 200).astype(np.float32)

    def predict(self, clicks: list[Click], prev_probs: np.ndarray | None) -> Prediction:
        return Prediction(self._probs, 0.0)


def seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def accept_seconds(widget: ClickWidget, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        widget.click(SIZE // 2, SIZE // 2)
        start = time.perf_counter()
        widget.accept()
        times.append(time.perf_counter() - start)
        widget.finish()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        slide = folder / "slide.tif"
        write_pyramidal_slide(slide, width=2048, height=2048, downsamples=(1, 4), seed=0)
        report: dict[str, object] = {
            "viewport": SIZE,
            "repeats": args.repeats,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
        for label, tolerance in (("exact", None), ("simplified", 0.5)):
            out = folder / f"{label}.geojson"
            widget = ClickWidget(
                slide, TissueMethod(), geojson=out, origin=(0, 0), size=SIZE,
                outline_tolerance=tolerance,
            )
            widget.click(SIZE // 2, SIZE // 2)
            session = widget.session
            part = widget._part()
            report[label] = {
                "mask_pixels": int(session.last.mask.sum()),
                "vertices": int(shapely.get_num_coordinates(part.shape)),
                "trace_seconds": seconds(lambda: widget._part(), args.repeats),
                "write_seconds": seconds(lambda: widget.target.save(part), args.repeats),
                "reread_seconds": seconds(lambda: read_geojson(out), args.repeats),
                "redraw_seconds": seconds(widget._refresh, args.repeats),
                "accept_seconds": accept_seconds(widget, args.repeats),
                "objects_in_file": len(read_geojson(out)),
            }
            widget.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
