"""Where the ClickWidget's Accept spends its time, on a 1024 x 1024 viewport.

The method is a stand-in with no model time, so only the widget's own work is measured: it
answers every click with the tile's tissue (darker than the background), a mask with a long,
ragged outline (the case that made Accept take seconds), and, as a typical tumour region, that
tissue smoothed (Gaussian, sigma 12 tile pixels) to one blob. Accept's parts are timed one by one
on the same mask (tracing the outline, writing it, redrawing), then whole, exact and simplified
within half a tile pixel (the default). Next to each new part, the old way in the same run:
GEOS's topology-preserving simplification (now only the fallback of
:func:`histoclick.geometry.simplify`), ``write_geojson(mode="append")`` (parses and rewrites the
whole file; the save target now edits what it wrote last, :class:`~histoclick.qupath.geojson.
GeoJSONCache`) and the full re-read after every save (now read only when someone else wrote the
file: ``reads_during_accepts``). Prints one JSON object (seconds: median over the repeats):

    python benchmarks/bench_widget.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import shapely

from histoclick.clicks import Click
from histoclick.datasets.synthetic import write_pyramidal_slide
from histoclick.evaluation.protocol import Prediction
from histoclick.geometry import as_multipolygon, mask_to_geometry, simplify
from histoclick.qupath import read_geojson, write_geojson
from histoclick.widgets import ClickWidget

SIZE = 1024


class TissueMethod:
    """Answers every click with the tissue of the tile (no model time); ``smooth``: the tissue
    blurred into its largest smooth blob, as a tumour region drawn by a model looks."""

    name = "tissue"

    def __init__(self, smooth: bool = False) -> None:
        self.smooth = smooth

    def set_image(self, image: np.ndarray) -> None:
        tissue = (image.mean(axis=2) < 200).astype(np.float32)
        if self.smooth:
            blob = (cv2.GaussianBlur(tissue, (0, 0), 12) > 0.5).astype(np.uint8)
            _, labels, stats, _ = cv2.connectedComponentsWithStats(blob)
            largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            tissue = (labels == largest).astype(np.float32)
        self._probs = tissue

    def predict(self, clicks: list[Click], prev_probs: np.ndarray | None) -> Prediction:
        return Prediction(self._probs, 0.0)


def seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def accept_seconds(widget: ClickWidget, repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of Accept (CPU time: less swayed by other jobs)."""
    wall, cpu = [], []
    for _ in range(repeats):
        widget.click(SIZE // 2, SIZE // 2)
        start, start_cpu = time.perf_counter(), time.process_time()
        widget.accept()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        widget.finish()
    return statistics.median(wall), statistics.median(cpu)


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
        cases = [
            (f"{shape} {label}", smooth, tolerance)
            for shape, smooth in (("ragged", False), ("smooth", True))
            for label, tolerance in (("exact", None), ("simplified", 0.5))
        ]
        for label, smooth, tolerance in cases:
            out = folder / f"{label.replace(' ', '-')}.geojson"
            widget = ClickWidget(
                slide, TissueMethod(smooth), geojson=out, origin=(0, 0), size=SIZE,
                outline_tolerance=tolerance,
            )
            widget.click(SIZE // 2, SIZE // 2)
            mask = widget.session.mask
            exact = mask_to_geometry(mask)
            part = widget._part()
            part_seconds = seconds(widget._part, args.repeats)
            reads = widget.target.reads
            accept, accept_cpu = accept_seconds(widget, args.repeats)
            old_file = folder / f"old-{out.name}"
            shutil.copy(out, old_file)  # the old way writes a file as full as the new one
            entry: dict[str, object] = {
                "mask_pixels": int(mask.sum()),
                "vertices": int(shapely.get_num_coordinates(part.shape)),
                "part_seconds": part_seconds,
                "write_seconds": seconds(lambda: widget.target.save(part), args.repeats),
                "old_write_seconds": seconds(
                    lambda: write_geojson([part], old_file, mode="append"), args.repeats
                ),
                "reread_seconds_avoided": seconds(lambda: read_geojson(out), args.repeats),
                "redraw_seconds": seconds(widget._refresh, args.repeats),
                "accept_seconds": accept,
                "accept_cpu_seconds": accept_cpu,
                "load_average": os.getloadavg()[0],
                "reads_during_accepts": widget.target.reads - reads,
                "objects_in_file": len(read_geojson(out)),
            }
            if tolerance is not None:
                new = seconds(lambda: simplify(exact, tolerance), args.repeats)
                old = seconds(
                    lambda: as_multipolygon(
                        shapely.simplify(exact, tolerance, preserve_topology=True)
                    ),
                    args.repeats,
                )
                entry |= {"simplify_seconds": new, "old_simplify_seconds": old}
            entry["write_ratio_new_to_old"] = entry["write_seconds"] / entry["old_write_seconds"]
            report[label] = entry
            widget.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
