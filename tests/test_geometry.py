"""Masks <-> level-0 polygons: exact round trips, holes, repair, simplification, bad input."""

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from histoclick.geometry import as_multipolygon, geometry_to_mask, limit_vertices, mask_to_geometry


@pytest.mark.parametrize(
    "origin, downsample", [((0, 0), 1.0), ((100, 37), 2.0), ((1024, 2048), 4.0), ((3, 5), 16.0), ((0, 0), 0.5)]
)
def test_random_masks_round_trip_exactly(origin, downsample):
    rng = np.random.default_rng(int(downsample * 10))
    for _ in range(20):
        mask = rng.random((13, 17)) > 0.5  # diagonal touches, holes, border pixels: the hard cases
        geometry = mask_to_geometry(mask, origin, downsample)
        assert geometry.is_valid
        assert geometry.area == pytest.approx(mask.sum() * downsample**2)
        np.testing.assert_array_equal(geometry_to_mask(geometry, mask.shape, origin, downsample), mask)


def test_polygon_vertices_lie_on_level0_pixel_edges():
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:7] = True
    geometry = mask_to_geometry(mask, origin=(1000, 2000), downsample=4)
    assert geometry.equals(MultiPolygon([box(1000 + 3 * 4, 2000 + 2 * 4, 1000 + 7 * 4, 2000 + 5 * 4)]))
    assert shapely.get_num_coordinates(geometry) == 5  # collinear row vertices removed


def test_holes_are_kept():
    mask = np.zeros((20, 20), bool)
    mask[2:18, 2:18] = True
    mask[8:12, 8:12] = False
    geometry = mask_to_geometry(mask)
    assert len(geometry.geoms) == 1
    (polygon,) = geometry.geoms
    assert len(polygon.interiors) == 1
    assert Polygon(polygon.interiors[0]).area == 16


def test_level0_geometry_through_a_tile_and_back():
    """level-0 -> tile mask -> polygon -> level-0 raster, exact when edges sit on the tile grid."""
    origin, downsample = (512, 256), 4.0
    level0 = MultiPolygon([box(512 + 8, 256 + 4, 512 + 40, 256 + 32), box(600, 300, 612, 320)])
    tile_mask = geometry_to_mask(level0, (32, 32), origin, downsample)
    assert tile_mask.sum() == (8 * 7) + (3 * 5)
    traced = mask_to_geometry(tile_mask, origin, downsample)
    assert traced.symmetric_difference(level0).area == 0
    full = geometry_to_mask(traced, (128, 128), origin, 1.0)
    np.testing.assert_array_equal(full, geometry_to_mask(level0, (128, 128), origin, 1.0))
    np.testing.assert_array_equal(full, np.kron(tile_mask, np.ones((4, 4), bool)))


def test_empty_mask_gives_empty_geometry_and_empty_raster():
    geometry = mask_to_geometry(np.zeros((10, 10), bool))
    assert isinstance(geometry, MultiPolygon) and geometry.is_empty
    assert not geometry_to_mask(geometry, (10, 10)).any()


def test_geometry_outside_tile_rasterises_to_nothing():
    assert not geometry_to_mask(box(100, 100, 200, 200), (10, 10), (0, 0), 1).any()


def test_invalid_geometry_is_repaired():
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10), (0, 0)])
    assert not bowtie.is_valid
    repaired = as_multipolygon(bowtie)
    assert repaired.is_valid and repaired.area == pytest.approx(50)
    assert geometry_to_mask(bowtie, (10, 10)).sum() == geometry_to_mask(repaired, (10, 10)).sum()


def test_vertex_count_is_bounded():
    yy, xx = np.mgrid[:400, :400]
    disk = (yy - 200) ** 2 + (xx - 200) ** 2 < 150**2
    exact = mask_to_geometry(disk)
    assert shapely.get_num_coordinates(exact) > 200
    bounded = mask_to_geometry(disk, max_vertices=50)
    assert shapely.get_num_coordinates(bounded) <= 50
    assert bounded.is_valid and bounded.area == pytest.approx(exact.area, rel=0.02)
    with pytest.raises(ValueError, match="max_vertices"):
        limit_vertices(exact, 3)


def test_simplify_tolerance_in_level0_pixels():
    yy, xx = np.mgrid[:100, :100]
    disk = (yy - 50) ** 2 + (xx - 50) ** 2 < 40**2
    fine = mask_to_geometry(disk, downsample=8)
    coarse = mask_to_geometry(disk, downsample=8, simplify_tolerance=16)
    assert shapely.get_num_coordinates(coarse) < shapely.get_num_coordinates(fine)
    assert shapely.hausdorff_distance(coarse, fine) <= 16 + 1e-9


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 4)), np.zeros(5)])
def test_mask_must_be_2d(bad):
    with pytest.raises(ValueError, match="2-D"):
        mask_to_geometry(bad)


@pytest.mark.parametrize("downsample", [0, -1, float("nan")])
def test_downsample_must_be_positive(downsample):
    with pytest.raises(ValueError, match="downsample"):
        mask_to_geometry(np.ones((2, 2)), downsample=downsample)


def _block_with_specks() -> np.ndarray:
    mask = np.zeros((64, 64), bool)
    mask[4:34, 4:34] = True
    mask[40::3, 1::3] = True  # 168 isolated one-pixel specks: each costs 5 vertices, simplified or not
    return mask


def test_vertex_bound_terminates_when_parts_cannot_be_simplified():
    """Used to loop forever: specks cannot be simplified below 5 vertices each."""
    bounded = mask_to_geometry(_block_with_specks(), max_vertices=20)
    assert shapely.get_num_coordinates(bounded) <= 20
    assert bounded.equals(MultiPolygon([box(4, 4, 34, 34)]))


def test_dropping_specks_keeps_the_remaining_outlines_exact():
    mask = _block_with_specks()
    mask[10:14, 10:20] = False  # a 40-pixel hole survives; the specks go first
    bounded = mask_to_geometry(mask, max_vertices=12)
    assert bounded.equals(MultiPolygon([Polygon(box(4, 4, 34, 34).exterior, [box(10, 10, 20, 14).exterior])]))


def test_unreachable_vertex_bound_is_a_clear_error():
    # GEOS's topology-preserving simplification stops at 4 corners for this snake-like outline.
    snake = np.array(
        [
            [1, 0, 1, 1, 0, 0, 1, 1],
            [0, 1, 0, 1, 0, 0, 1, 0],
            [0, 1, 0, 0, 1, 1, 0, 0],
            [1, 1, 0, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 0, 0, 0, 1],
            [0, 1, 0, 1, 0, 1, 1, 0],
            [1, 0, 0, 1, 0, 1, 0, 1],
            [1, 0, 0, 1, 1, 0, 0, 1],
        ],
        bool,
    )
    with pytest.raises(ValueError, match="max_vertices=4.*larger max_vertices"):
        mask_to_geometry(snake, max_vertices=4)


def test_checkerboard_squares_touching_at_corners_are_separate_valid_parts():
    checkerboard = (np.indices((64, 64)).sum(axis=0) % 2).astype(bool)
    geometry = mask_to_geometry(checkerboard, (10, 20), 2.0)
    assert geometry.is_valid and len(geometry.geoms) == 64 * 64 // 2
    np.testing.assert_array_equal(geometry_to_mask(geometry, (64, 64), (10, 20), 2.0), checkerboard)


def test_outline_touching_itself_at_a_corner_gives_a_hole_touching_the_shell():
    mask = np.array(
        [
            [1, 1, 1, 0],
            [1, 0, 0, 1],  # the ring closes only through the corner between (0, 2) and (1, 3)
            [1, 0, 0, 1],
            [1, 1, 1, 1],
        ],
        bool,
    )
    geometry = mask_to_geometry(mask)
    assert geometry.is_valid and len(geometry.geoms) == 1
    (polygon,) = geometry.geoms
    assert len(polygon.interiors) == 1 and Polygon(polygon.interiors[0]).area == 4
    np.testing.assert_array_equal(geometry_to_mask(geometry, mask.shape), mask)
