"""Cost of appending one annotation to a QuPath GeoJSON file that already holds N features.

``write_geojson(..., mode="append")`` reads, parses and rewrites the whole file under its lock,
so the time grows with N. Prints one JSON object (seconds: median over the repeats):

    python benchmarks/bench_geojson_append.py --sizes 1000 10000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from shapely.geometry import box

from histoclick.qupath import Annotation, write_geojson


def existing_file(path: Path, n: int) -> None:
    """``n`` QuPath-style features: 32-vertex polygons with a class and two measurements."""
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 20
    features = []
    for i in range(n):
        x, y = (i % 1000) * 50.0, (i // 1000) * 50.0
        coordinates = (ring + (x, y)).round(2).tolist()
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid4()),
            "geometry": {"type": "Polygon", "coordinates": [coordinates + coordinates[:1]]},
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "Tumor", "color": [200, 0, 0]},
                "measurements": {"histoclick clicks": 3, "histoclick predicted IoU": 0.9},
            },
        })  # fmt: skip
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            path = Path(folder) / f"n{n}.geojson"
            existing_file(path, n)
            size_mb = path.stat().st_size / 1e6
            times = []
            for i in range(args.repeats):
                annotation = Annotation(box(i, i, i + 10, i + 10), "Tumor")
                started = time.perf_counter()
                write_geojson([annotation], path, mode="append")
                times.append(time.perf_counter() - started)
            results.append({
                "features": n,
                "file_mb": round(size_mb, 2),
                "append_seconds": round(statistics.median(times), 4),
                "append_seconds_min": round(min(times), 4),
            })  # fmt: skip
    print(json.dumps({
        "benchmark": "geojson_append",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "results": results,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
