"""Level-0 -> tile -> mask -> polygon -> level-0 raster, to the pixel, through real OpenSlide reads.

A slide is written whose level-0 picture holds dark shapes on a 16-pixel grid, so every pyramid
level shows them with crisp edges; reading them back at 40x, 20x, 10x and 2.5x and tracing the
thresholded tile must give back the level-0 shapes exactly.
"""

import numpy as np
import pytest
from shapely.geometry import MultiPolygon, Polygon, box

from histoclick import open_slide
from histoclick.datasets.synthetic import write_pyramidal_tiff
from histoclick.geometry import geometry_to_mask, mask_to_geometry

WIDTH, HEIGHT = 1024, 768
# Level-0 shapes on the 16-pixel grid: a rectangle with a square hole, an L shape, a lone block.
SHAPES = MultiPolygon(
    [
        Polygon(
            [(160, 96), (480, 96), (480, 352), (160, 352)],
            [[(272, 192), (336, 192), (336, 256), (272, 256)]],
        ),
        Polygon([(560, 400), (720, 400), (720, 448), (608, 448), (608, 592), (560, 592)]),
        box(864, 640, 880, 656),
    ]
)


@pytest.fixture(scope="module")
def shapes_slide(tmp_path_factory):
    level0 = geometry_to_mask(SHAPES, (HEIGHT, WIDTH))
    image = np.full((HEIGHT, WIDTH, 3), 235, np.uint8)
    image[level0] = (60, 20, 110)
    path = tmp_path_factory.mktemp("coords") / "shapes.tif"
    write_pyramidal_tiff(path, image, downsamples=(1, 4, 16), objective_power=40, mpp=0.25)
    return path, level0


@pytest.mark.parametrize("magnification, downsample", [(40, 1), (20, 2), (10, 4), (2.5, 16)])
@pytest.mark.parametrize("origin", [(0, 0), (128, 64), (512, 384)])
def test_shapes_round_trip_to_the_pixel(shapes_slide, magnification, downsample, origin):
    path, level0 = shapes_slide
    size = 256
    with open_slide(path) as slide:
        tile = slide.read_region(*origin, size, size, magnification=magnification)
    assert tile.origin == origin and tile.downsample == downsample

    tile_mask = tile.image[..., 0] < 148  # the shapes are dark, the background light
    geometry = mask_to_geometry(tile_mask, tile.origin, tile.downsample)
    # The tile sees exactly the part of the level-0 shapes it covers.
    x0, y0 = origin
    covered = box(x0, y0, x0 + size * downsample, y0 + size * downsample)
    assert geometry.symmetric_difference(SHAPES.intersection(covered)).area == 0

    # Back to a level-0 raster over the covered area: identical to the slide's own pixels.
    h, w = min(size * downsample, HEIGHT - y0), min(size * downsample, WIDTH - x0)
    raster = geometry_to_mask(geometry, (h, w), origin, 1.0)
    np.testing.assert_array_equal(raster, level0[y0 : y0 + h, x0 : x0 + w])


@pytest.mark.parametrize("downsample", [1, 4, 16])
def test_level0_points_land_on_their_tile_pixels(shapes_slide, downsample):
    path, _ = shapes_slide
    with open_slide(path) as slide:
        tile = slide.read_region(768, 576, 128, 128, downsample=downsample)
    # The lone 16x16 block at level-0 (864, 640): its centre falls in a dark tile pixel, and the
    # tile pixels just outside it (one block width away) are light.
    x, y = tile.to_tile(864 + 8, 640 + 8)
    j, i = int(np.floor(x)), int(np.floor(y))
    assert tile.image[i, j, 0] < 148
    x, y = tile.to_tile(864 - 8, 640 + 8)
    assert tile.image[int(np.floor(y)), int(np.floor(x)), 0] > 148
    back = tile.to_level0(*tile.to_tile(864.0, 640.0))
    assert back == (864.0, 640.0)
