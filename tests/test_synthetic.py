"""Synthetic H&E data: determinism, plausible masks and colours, files on disk that OpenSlide reads."""

from __future__ import annotations

import cv2
import numpy as np
import openslide
import pytest

from histoclick.datasets.synthetic import make_tile, write_pyramidal_slide, write_pyramidal_tiff
from histoclick.slides import open_slide


def test_same_seed_same_tile_and_different_seed_different_tile():
    image, mask = make_tile(seed=7, size=256)
    again_image, again_mask = make_tile(seed=7, size=256)
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(mask, again_mask)
    other_image, other_mask = make_tile(seed=8, size=256)
    assert (other_image != image).mean() > 0.5 and (other_mask != mask).any()


@pytest.mark.parametrize("seed", range(6))
def test_tile_looks_like_tissue_with_a_tumour(seed):
    image, mask = make_tile(seed=seed, size=512)
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    assert mask.shape == (512, 512) and mask.dtype == bool
    assert 0.05 < mask.mean() < 0.6

    glass = (image > 225).all(axis=2)
    border = np.ones_like(glass)
    border[32:-32, 32:-32] = False
    edges = glass[border]
    assert 0.02 < glass.mean() < 0.5 and edges.mean() > glass.mean()  # white mostly along the edges
    assert not (glass & mask).any()

    # Tumour is darker (more and bigger nuclei) and bluer than the surrounding stroma.
    stroma = ~glass & ~cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    pixels = image.astype(float)
    assert pixels[mask].mean() < pixels[stroma].mean() - 15
    blueness = pixels[..., 2] - pixels[..., 0]
    assert blueness[mask].mean() > blueness[stroma].mean() + 10


def test_write_sample_layout(synthetic_sample):
    images = sorted(p.name for p in (synthetic_sample / "images").iterdir())
    masks = sorted(p.name for p in (synthetic_sample / "masks").iterdir())
    assert images == masks == ["00000.png", "00001.png", "00002.png", "00003.png"]
    image = cv2.cvtColor(cv2.imread(str(synthetic_sample / "images" / "00002.png")), cv2.COLOR_BGR2RGB)
    mask = cv2.imread(str(synthetic_sample / "masks" / "00002.png"), cv2.IMREAD_UNCHANGED)
    expected_image, expected_mask = make_tile(seed=2, size=256)
    np.testing.assert_array_equal(image, expected_image)
    assert mask.dtype == np.uint8 and mask.ndim == 2 and set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask == 255, expected_mask)


def test_pyramidal_slide_metadata_in_openslide(synthetic_slide):
    with openslide.OpenSlide(synthetic_slide.path) as raw:
        assert raw.properties["openslide.vendor"] == "aperio"
        assert float(raw.properties["openslide.objective-power"]) == 40.0
        assert float(raw.properties["openslide.mpp-x"]) == float(raw.properties["openslide.mpp-y"]) == 0.25
        assert raw.level_count == 3 and raw.level_downsamples == (1.0, 4.0, 16.0)
        assert raw.dimensions == (2048, 1536)
    assert synthetic_slide.mask.shape == (1536, 2048) and 0.05 < synthetic_slide.mask.mean() < 0.6


def test_pyramidal_slide_pixels_follow_the_mask(synthetic_slide):
    with open_slide(synthetic_slide.path) as slide:
        tile = slide.read_region(0, 0, 512, 384, magnification=10)
    mask = cv2.resize(synthetic_slide.mask.astype(np.uint8), (512, 384), interpolation=cv2.INTER_AREA) > 0
    pixels = tile.image.astype(float)
    tissue = ~(pixels > 225).all(axis=2)
    assert pixels[mask].mean() < pixels[tissue & ~mask].mean() - 15


def test_thumbnail_tissue_mask_finds_the_tissue(synthetic_slide):
    with open_slide(synthetic_slide.path) as slide:
        mask, downsample = slide.tissue_mask(512)
    assert downsample == 4.0 and mask.shape == (384, 512)
    tumour = cv2.resize(synthetic_slide.mask.astype(np.uint8), (512, 384), interpolation=cv2.INTER_AREA) > 0
    assert mask[tumour].mean() > 0.98  # tumour lies in tissue
    assert 0.5 < mask.mean() < 0.97  # and there is glass too


def test_small_slide_is_deterministic_and_jpeg_works(tmp_path):
    small = {"width": 512, "height": 256, "downsamples": (1, 4), "seed": 3, "tile_size": 128}
    first = write_pyramidal_slide(tmp_path / "a.tif", **small)
    second = write_pyramidal_slide(tmp_path / "b.tif", **small)
    np.testing.assert_array_equal(first, second)
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()

    image, _ = make_tile(seed=3, size=256)
    write_pyramidal_tiff(tmp_path / "c.tif", image, (1, 4), tile_size=128, compression="jpeg")
    with open_slide(tmp_path / "c.tif") as slide:
        assert slide.level_downsamples == (1.0, 4.0) and slide.objective_power == 40.0
        assert np.abs(slide.read_region(0, 0, 256, 256).image.astype(int) - image).mean() < 6


def test_pyramid_sizes_must_divide(tmp_path):
    image = np.zeros((100, 128, 3), np.uint8)
    with pytest.raises(ValueError, match=r"not divisible by downsamples \[8\]; .* multiples of 8"):
        write_pyramidal_tiff(tmp_path / "x.tif", image, (1, 4, 8))
    with pytest.raises(ValueError, match="start at 1 and increase"):
        write_pyramidal_tiff(tmp_path / "x.tif", image, (1, 4, 2))
    with pytest.raises(ValueError, match="multiple of 16"):
        write_pyramidal_tiff(tmp_path / "x.tif", image, (1, 4), tile_size=100)
    with pytest.raises(ValueError, match="uint8 RGB"):
        write_pyramidal_tiff(tmp_path / "x.tif", image[..., 0], (1,))
