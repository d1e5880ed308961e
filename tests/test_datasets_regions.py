"""Region-level protocol on a real pyramidal TIFF: one target region per sample, the other tumour
ignored, tiles on the boundary of regions larger than the tile, small regions centred."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from shapely.geometry import box

from histoclick.datasets.camelyon16 import Camelyon16Dataset
from histoclick.datasets.regions import region_tile_origin
from test_datasets_xml import asap_annotation, rect, write_asap

DS = 4.0  # synthetic_slide is 40x; x10 tiles
TILE = 128  # tile pixels, so 512 level-0 pixels per side

BIG = (100, 100, 1300, 1100)  # 1200 x 1000 level-0 pixels: larger than a tile
BIG_HOLE = (600, 150, 700, 250)  # an exclusion near BIG's top: moves its centroid down
SMALL = (1600, 1200, 1700, 1300)
SMALL_HOLE = (1630, 1230, 1670, 1270)  # an exclusion inside SMALL
TINY = (1750, 1350, 1800, 1400)  # 2500 px^2 = 156 tile pixels


def inside(origin, *rects):
    """Tile pixels whose centre lies in (or on) one of the level-0 rectangles."""
    centres = np.arange(TILE) * DS + DS / 2
    xs, ys = origin[0] + centres[None, :], origin[1] + centres[:, None]
    out = np.zeros((TILE, TILE), bool)
    for x0, y0, x1, y1 in rects:
        out |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return out


@pytest.fixture
def camelyon(tmp_path, synthetic_slide):
    slides, annotations = tmp_path / "slides", tmp_path / "annotations"
    slides.mkdir()
    annotations.mkdir()
    shutil.copy(synthetic_slide.path, slides / "tumor_001.tif")
    write_asap(
        annotations / "tumor_001.xml",
        asap_annotation("Tumor", rect(*BIG)),
        asap_annotation("_2", rect(*BIG_HOLE)),
        asap_annotation("_1", rect(*SMALL)),
        asap_annotation("Exclusion", rect(*SMALL_HOLE)),
        asap_annotation("_1", rect(*TINY)),
    )
    return slides, annotations


def test_one_region_per_sample_other_tumour_ignored(camelyon):
    dataset = Camelyon16Dataset(*camelyon, tile_size=TILE)
    # Largest region first. BIG minus its hole has its centroid at (700.4, 603.4), 496.6 from
    # the bottom edge and 503.4 from the top, so its tile is centred on (700.4, 1100): origin
    # (444, 844). SMALL and TINY are centred on their boxes; TINY's tile is moved up to end at
    # the slide's bottom edge (1536).
    assert dataset.sample_ids == [
        "tumor_001@444,844#r0", "tumor_001@1394,994#r1", "tumor_001@1519,1024#r2"
    ]
    big, small, tiny = (dataset.load(i) for i in dataset.sample_ids)

    assert big.meta["placement"] == "boundary" and big.meta["origin"] == (444.0, 844.0)
    np.testing.assert_array_equal(big.gt, inside((444, 844), BIG))
    assert big.ignore is None
    assert big.gt.mean() == 0.5  # rows above y = 1100 are tumour: the boundary crosses the tile

    assert small.meta["placement"] == "centred"
    hole = inside((1394, 994), SMALL_HOLE)
    np.testing.assert_array_equal(small.gt, inside((1394, 994), SMALL) & ~hole)
    # The exclusion and the other tumour region are ignored: neither object nor background.
    np.testing.assert_array_equal(small.ignore, inside((1394, 994), TINY) | hole)
    np.testing.assert_array_equal(tiny.gt, inside((1519, 1024), TINY))
    np.testing.assert_array_equal(tiny.ignore, inside((1519, 1024), SMALL))

    assert tiny.meta["tile_id"] == "tumor_001@1519,1024" and tiny.meta["object_id"] == "r2"
    assert tiny.meta["region_bounds"] == tuple(float(v) for v in TINY)
    assert tiny.meta["downsample"] == DS and tiny.meta["mpp"] == pytest.approx(1.0)
    assert tiny.image.shape == (TILE, TILE, 3)


def test_study_tiles_protocol_gives_a_tumour_only_tile_for_a_large_region(camelyon):
    # The defect the region protocol fixes: centred on its centroid, BIG fills its tile.
    dataset = Camelyon16Dataset(*camelyon, tile_size=TILE, protocol="tiles")
    assert dataset.sample_ids[0] == "tumor_001@444,347"
    first = dataset.load(dataset.sample_ids[0])
    assert first.gt.all() and first.ignore is None
    assert "object_id" not in first.meta and first.meta["protocol"] == "tiles"


def test_region_tile_origin_centres_small_regions_inside_the_slide():
    assert region_tile_origin(box(1000, 1000, 1200, 1100), 512, (4096, 4096)) == (844, 794, "centred")
    # Near the slide's bottom-right corner the tile is moved inside the 2048 x 1536 slide.
    assert region_tile_origin(box(1900, 1400, 2000, 1500), 512, (2048, 1536)) == (1536, 1024, "centred")
