"""mask_to_geometry speed: pixel-edge tracing, and the vertex bound, on hard and realistic masks.

Prints one JSON object (seconds, vertex and part counts). Cases: a 512x512 checkerboard
(131,072 squares touching at corners, the worst case for tracing) and a 1024x1024 blob shaped
like a segmentation: a smooth irregular region with holes and 2% salt-and-pepper specks.

    python benchmarks/bench_geometry.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import cv2
import numpy as np
import shapely

from histoclick.geometry import geometry_to_mask, mask_to_geometry


def checkerboard(size: int) -> np.ndarray:
    return (np.indices((size, size)).sum(axis=0) % 2).astype(bool)


def blob(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = cv2.resize(rng.standard_normal((8, 8)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    region = field - 6 * (xx**2 + yy**2) > -0.6
    return region ^ (rng.random((size, size)) < 0.02)


def measure(mask: np.ndarray, max_vertices: int | None) -> dict:
    start = time.perf_counter()
    geometry = mask_to_geometry(mask, max_vertices=max_vertices)
    seconds = time.perf_counter() - start
    result = {
        "max_vertices": max_vertices,
        "seconds": round(seconds, 3),
        "vertices": int(shapely.get_num_coordinates(geometry)),
        "parts": len(geometry.geoms),
        "valid": bool(geometry.is_valid),
    }
    if max_vertices is None:
        result["round_trip_exact"] = bool((geometry_to_mask(geometry, mask.shape) == mask).all())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-vertices", type=int, default=2000)
    args = parser.parse_args()
    cases = {"checkerboard_512": checkerboard(512), "blob_1024": blob(1024)}
    report = {"python": platform.python_version(), "shapely": shapely.__version__, "cases": {}}
    for name, mask in cases.items():
        report["cases"][name] = {
            "pixels": int(mask.size),
            "foreground": int(mask.sum()),
            "exact": measure(mask, None),
            "bounded": measure(mask, args.max_vertices),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
