"""Slide reading via real OpenSlide on TIFFs written here: levels, resolutions, pixel placement, errors."""

from __future__ import annotations

import cv2
import numpy as np
import openslide
import pytest
import tifffile

from histoclick.datasets.synthetic import make_tile, write_pyramidal_tiff
from histoclick.slides import SlideError, Tile, detect_tissue, open_slide

PINK = (230, 160, 200)
RED = (255, 0, 0)
BLUE = (0, 0, 255)
# Marker squares on the marker slide: (x0, y0, side, colour) in level-0 pixels, aligned to 16.
MARKERS = [(640, 320, 64, RED), (128, 512, 32, BLUE)]


@pytest.fixture(scope="module")
def slide(synthetic_slide):
    with open_slide(synthetic_slide.path) as opened:
        yield opened


@pytest.fixture(scope="module")
def raw(synthetic_slide):
    """The same file opened with OpenSlide directly, as ground truth."""
    with openslide.OpenSlide(synthetic_slide.path) as opened:
        yield opened


def raw_rgb(raw, location, level, size):
    return np.asarray(raw.read_region(location, level, size))[..., :3]


@pytest.fixture(scope="module")
def marker_slide(tmp_path_factory):
    """1024x768 slide, pink tissue on the left half, white glass on the right, coloured squares."""
    image = np.full((768, 1024, 3), 255, np.uint8)
    image[:, :512] = PINK
    for x0, y0, side, colour in MARKERS:
        image[y0 : y0 + side, x0 : x0 + side] = colour
    path = tmp_path_factory.mktemp("marker") / "marker.tif"
    write_pyramidal_tiff(path, image, (1, 4, 16), objective_power=40.0, mpp=0.25, tile_size=256)
    with open_slide(path) as opened:
        yield opened


def test_metadata_and_levels(slide):
    assert slide.dimensions == (2048, 1536)
    assert slide.level_count == 3
    assert slide.level_dimensions == ((2048, 1536), (512, 384), (128, 96))
    assert slide.level_downsamples == (1.0, 4.0, 16.0)
    assert slide.objective_power == 40.0
    assert slide.mpp == 0.25
    assert slide.properties["openslide.vendor"] == "aperio"
    assert "2048x1536" in repr(slide)


@pytest.mark.parametrize(
    "request_kwargs, downsample, magnification",
    [
        ({}, 1.0, 40.0),
        ({"magnification": 40}, 1.0, 40.0),
        ({"magnification": 10}, 4.0, 10.0),
        ({"magnification": 2.5}, 16.0, 2.5),
        ({"magnification": 20}, 2.0, 20.0),
        ({"mpp": 1.0}, 4.0, 10.0),
        ({"mpp": 0.5}, 2.0, 20.0),
        ({"downsample": 8}, 8.0, 5.0),
    ],
)
def test_read_region_geometry_is_exact(slide, request_kwargs, downsample, magnification):
    tile = slide.read_region(100, 200, 300, 150, **request_kwargs)
    assert tile.image.shape == (150, 300, 3) and tile.image.dtype == np.uint8
    assert (tile.width, tile.height) == (300, 150)
    assert tile.origin == (100.0, 200.0)
    assert tile.downsample == downsample
    assert tile.magnification == pytest.approx(magnification)


@pytest.mark.parametrize("location", [(1000, 800), (1002, 801)])
def test_matching_level_is_read_without_resampling(slide, raw, location):
    tile = slide.read_region(*location, 200, 150, magnification=10)
    np.testing.assert_array_equal(tile.image, raw_rgb(raw, location, 1, (200, 150)))


def test_coarse_level_read_matches_openslide(slide, raw):
    tile = slide.read_region(320, 160, 64, 48, magnification=2.5)
    np.testing.assert_array_equal(tile.image, raw_rgb(raw, (320, 160), 2, (64, 48)))


def test_resampled_read_matches_inter_area_of_the_finer_level(slide, raw):
    tile = slide.read_region(512, 256, 300, 200, magnification=20)  # level 0, downsample 2
    expected = cv2.resize(raw_rgb(raw, (512, 256), 0, (600, 400)), (300, 200), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(tile.image, expected)

    tile = slide.read_region(512, 256, 40, 30, downsample=32)  # level 2 (16), resampled by 2
    expected = cv2.resize(raw_rgb(raw, (512, 256), 2, (80, 60)), (40, 30), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(tile.image, expected)


@pytest.mark.parametrize("downsample", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("origin", [(0, 256), (112, 64), (-32, 48)])
def test_markers_land_where_to_tile_says(marker_slide, downsample, origin):
    tile = marker_slide.read_region(*origin, 768 // downsample, 512 // downsample, downsample=downsample)
    for x0, y0, side, colour in MARKERS:
        left, top = (int(v) for v in tile.to_tile(x0, y0))
        right, bottom = (int(v) for v in tile.to_tile(x0 + side, y0 + side))
        assert (right - left, bottom - top) == (side // downsample,) * 2
        assert (tile.image[top:bottom, left:right] == colour).all()
        # The ring of pixels just outside the square is not the marker colour.
        ring = np.concatenate(
            [
                tile.image[top - 1, left:right],
                tile.image[bottom, left:right],
                tile.image[top:bottom, left - 1],
                tile.image[top:bottom, right],
            ]
        )
        assert not (ring == colour).all(axis=1).any()
        # And the centre of a marker pixel maps back into the marker on level 0.
        cx, cy = tile.to_level0(left + 0.5, top + 0.5)
        assert x0 <= cx < x0 + side and y0 <= cy < y0 + side


def test_full_resolution_marker_at_any_origin(marker_slide):
    x0, y0, side, colour = MARKERS[0]
    for origin in [(601, 299), (633, 317), (600, 250)]:
        tile = marker_slide.read_region(*origin, 128, 128)
        left, top = (int(v) for v in tile.to_tile(x0, y0))
        assert (tile.image[top : top + side, left : left + side] == colour).all()
        assert not (tile.image[top - 1, left] == colour).all()
        assert not (tile.image[top, left - 1] == colour).all()


def test_regions_partly_outside_are_white(slide):
    tile = slide.read_region(2000, 1500, 100, 80)
    assert (tile.image[:, 48:] == 255).all() and (tile.image[36:] == 255).all()
    assert not (tile.image[:36, :48] == 255).all()
    tile = slide.read_region(-40, -20, 100, 50, magnification=10)  # 10 px x 5 px of padding
    assert (tile.image[:, :10] == 255).all() and (tile.image[:5] == 255).all()
    assert not (tile.image[5:, 10:] == 255).all()


def test_level_downsample_slightly_off_still_serves_the_request(tmp_path):
    # Scanners' reduced levels rarely divide evenly: here level 1 is 2050/512 ~ 4.004 x 1540/385 = 4.
    image, _ = make_tile(seed=3, size=2050)
    image = image[:1540]
    path = tmp_path / "uneven.tif"
    with tifffile.TiffWriter(path) as tif:
        for i, size in enumerate([(2050, 1540), (512, 385)]):
            level = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            tif.write(
                level, photometric="rgb", tile=(256, 256), compression="deflate", metadata=None,
                description="Aperio Image Library v12\r\ntest|AppMag = 40|MPP = 0.25" if i == 0 else None,
                subfiletype=1 if i else 0,
            )
    with open_slide(path) as uneven, openslide.OpenSlide(path) as raw_uneven:
        assert 4.0 < uneven.level_downsamples[1] < 4.01
        tile = uneven.read_region(400, 600, 128, 96, magnification=10)
        assert tile.downsample == 4.0
        np.testing.assert_array_equal(tile.image, raw_rgb(raw_uneven, (400, 600), 1, (128, 96)))


def test_plain_png_reads_like_a_one_level_slide(tmp_path):
    image, _ = make_tile(seed=5, size=256)
    path = tmp_path / "tile.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    with open_slide(path) as plain:
        assert plain.dimensions == (256, 256) and plain.level_count == 1
        assert plain.objective_power is None and plain.mpp is None
        tile = plain.read_region(10, 20, 100, 50)
        np.testing.assert_array_equal(tile.image, image[20:70, 10:110])
        assert tile.magnification is None
        half = plain.read_region(0, 0, 128, 128, downsample=2)
        np.testing.assert_array_equal(half.image, cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA))
        padded = plain.read_region(200, -10, 100, 30)
        np.testing.assert_array_equal(padded.image[10:, :56], image[:20, 200:])
        assert (padded.image[:10] == 255).all() and (padded.image[:, 56:] == 255).all()
        with pytest.raises(ValueError, match="no objective power.*downsample="):
            plain.read_region(0, 0, 10, 10, magnification=10)
        with pytest.raises(ValueError, match="no resolution"):
            plain.read_region(0, 0, 10, 10, mpp=0.5)


def test_plain_jpeg_gray_and_rgba_images(tmp_path):
    image, _ = make_tile(seed=6, size=128)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(tmp_path / "tile.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    with open_slide(tmp_path / "tile.jpg") as jpeg:
        assert np.abs(jpeg.read_region(0, 0, 128, 128).image.astype(int) - image).mean() < 4

    gray = image[..., 1]
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    with open_slide(tmp_path / "gray.png") as plain:
        read = plain.read_region(0, 0, 128, 128).image
        np.testing.assert_array_equal(read, np.repeat(gray[..., None], 3, 2))

    rgba = np.dstack([image, np.full((128, 128), 255, np.uint8)])
    rgba[:, :64, 3] = 0  # transparent left half composites to white
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    with open_slide(tmp_path / "rgba.png") as plain:
        read = plain.read_region(0, 0, 128, 128).image
        assert (read[:, :64] == 255).all()
        np.testing.assert_array_equal(read[:, 64:], image[:, 64:])


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.svs"):
        open_slide(tmp_path / "nope.svs")


@pytest.mark.parametrize("suffix", [".svs", ".tif", ".png"])
def test_corrupt_file_is_a_clear_slide_error(tmp_path, suffix):
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(SlideError, match=rf"corrupt\{suffix}.*Supported: whole-slide images") as caught:
        open_slide(path)
    assert isinstance(caught.value, ValueError)


def test_bad_resolution_requests(slide):
    with pytest.raises(ValueError, match=r"use magnification <= 40"):
        slide.read_region(0, 0, 10, 10, magnification=80)
    with pytest.raises(ValueError, match=r"use mpp >= 0.25"):
        slide.read_region(0, 0, 10, 10, mpp=0.1)
    with pytest.raises(ValueError, match="only one of"):
        slide.read_region(0, 0, 10, 10, magnification=10, mpp=1.0)
    with pytest.raises(ValueError, match="positive"):
        slide.read_region(0, 0, 10, 10, magnification=0)
    with pytest.raises(ValueError, match="downsample >= 1"):
        slide.read_region(0, 0, 10, 10, downsample=0.5)
    with pytest.raises(ValueError, match="at least 1 output pixel"):
        slide.read_region(0, 0, 0, 10)


@pytest.mark.parametrize("x, y", [(2048, 0), (0, 1536), (-400, 0), (5000, 5000)])
def test_region_entirely_outside_is_an_error(slide, x, y):
    with pytest.raises(ValueError, match=r"entirely outside .*2048x1536"):
        slide.read_region(x, y, 100, 100, magnification=10)


def test_unknown_metadata_asks_for_downsample(tmp_path):
    image, _ = make_tile(seed=2, size=256)
    path = write_pyramidal_tiff(tmp_path / "bare.tif", image, (1, 4), None, None, tile_size=128)
    with open_slide(path) as bare:
        assert bare.objective_power is None and bare.mpp is None and bare.level_count == 2
        with pytest.raises(ValueError, match=r"bare.tif has no objective power .*pass downsample="):
            bare.read_region(0, 0, 10, 10, magnification=10)
        with pytest.raises(ValueError, match=r"bare.tif has no resolution .*pass downsample="):
            bare.read_region(0, 0, 10, 10, mpp=1.0)
        assert bare.read_region(0, 0, 64, 64, downsample=4).downsample == 4.0


def test_objective_only_slide_suggests_magnification(tmp_path):
    image, _ = make_tile(seed=2, size=256)
    path = write_pyramidal_tiff(tmp_path / "nompp.tif", image, (1,), 20.0, None, tile_size=128)
    with open_slide(path) as nompp:
        with pytest.raises(ValueError, match=r"pass magnification= instead \(.* scanned at 20x\)"):
            nompp.read_region(0, 0, 10, 10, mpp=1.0)


def test_thumbnail_downsample_is_exact(slide, raw):
    thumb = slide.thumbnail(512)
    assert thumb.image.shape == (384, 512, 3) and thumb.downsample == 4.0 and thumb.origin == (0.0, 0.0)
    np.testing.assert_array_equal(thumb.image, raw_rgb(raw, (0, 0), 1, (512, 384)))
    odd = slide.thumbnail(300)
    assert odd.downsample == 2048 / 300 and (odd.width, odd.height) == (300, 225)


def test_tissue_tiles_follow_the_tissue(marker_slide):
    # Tissue fills x < 512: at 40x with 128-pixel tiles that is the 4 left columns of 6 rows.
    tiles = marker_slide.tissue_tiles(128, magnification=40)
    assert tiles == [(x, y) for y in range(0, 768, 128) for x in range(0, 512, 128)]
    # 10x tiles of 128 px span 512 level-0 px: the left column is all tissue, the right none.
    # The bottom row reaches past the slide (y in [512, 1024) of 768): outside counts as glass.
    assert marker_slide.tissue_tiles(128, magnification=10, min_tissue=0.4) == [(0, 0), (0, 512)]
    assert marker_slide.tissue_tiles(128, magnification=10, min_tissue=0.6) == [(0, 0)]
    assert len(marker_slide.tissue_tiles(128, magnification=10, min_tissue=0)) == 4
    # Tiles straddling the border at 192 level-0 px: x in [384, 576) is 2/3 tissue.
    assert (384, 0) in marker_slide.tissue_tiles(96, magnification=20, min_tissue=0.6)
    assert (384, 0) not in marker_slide.tissue_tiles(96, magnification=20, min_tissue=0.7)


def test_detect_tissue_ignores_glass_and_specks():
    image = np.full((200, 200, 3), 245, np.uint8)
    image[50:150, 40:160] = PINK
    image[10, 10] = PINK  # a one-pixel speck
    mask = detect_tissue(image)
    assert mask[60:140, 50:150].all() and not mask[:40].any() and not mask[10, 10]


def test_tile_from_array_and_coordinates():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    tile = Tile.from_array(gray)
    assert tile.image.shape == (3, 4, 3) and (tile.image[..., 2] == gray).all()
    assert tile.origin == (0.0, 0.0) and tile.downsample == 1.0 and tile.magnification is None
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    assert Tile.from_array(rgba).image[0, 0].tolist() == [10, 20, 30]
    assert Tile.from_array(rgba).image[1, 1].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="uint8"):
        Tile.from_array(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="from_array"):
        Tile(np.zeros((4, 4), np.uint8), (0, 0), 1.0)

    tile = Tile(np.zeros((10, 20, 3), np.uint8), (100, 50), 4)
    assert tile.to_level0(2, 3) == (108.0, 62.0)
    assert tile.to_tile(108.0, 62.0) == (2.0, 3.0)
    xs, ys = tile.to_tile(*tile.to_level0(np.array([0.5, 19.5]), np.array([0.5, 9.5])))
    np.testing.assert_allclose(xs, [0.5, 19.5])
    np.testing.assert_allclose(ys, [0.5, 9.5])
    with pytest.raises(AttributeError):
        tile.downsample = 2.0


def test_real_svs(shared_data):
    path = shared_data / "slides" / "cmu_small_region.svs"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    with open_slide(path) as cmu:
        assert cmu.dimensions == (2220, 2967)
        assert cmu.objective_power == 20.0 and cmu.mpp == pytest.approx(0.499)
        tile = cmu.read_region(1000, 1500, 256, 256, magnification=5)
        assert tile.downsample == 4.0 and tile.image.shape == (256, 256, 3)
        assert tile.magnification == 5.0
        mask, downsample = cmu.tissue_mask(512)
        assert downsample == 2967 / 512 and 0.1 < mask.mean() < 0.9
        assert cmu.tissue_tiles(256, magnification=20)
