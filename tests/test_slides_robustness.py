"""Hostile and damaged slide files, written for real: decompression bombs, lying headers,
truncated and bit-flipped pyramidal TIFFs, and low magnifications without a pyramid level."""

import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
import tifffile

from histoclick import slides
from histoclick.datasets.synthetic import write_pyramidal_slide, write_pyramidal_tiff
from histoclick.slides import SlideError, open_slide


def _write_png_of_zeros(path, width, height):
    """A valid gray PNG streamed row by row: tiny on disk, ``width * height`` pixels decoded."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row, parts = zlib.compressobj(9), b"\0" * (width + 1), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    _write_png_of_zeros(path, 12000, 12000)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(SlideError, match=r"bomb\.png.*144,000,000 pixels.*max_image_pixels=None"):
        open_slide(path)


def test_pixel_limit_has_an_argument_and_an_environment_opt_out(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), np.full((80, 100, 3), 128, np.uint8))
    with pytest.raises(SlideError, match="8,000 pixels, more than the limit of 1,000"):
        open_slide(path, max_image_pixels=1000)
    with open_slide(path, max_image_pixels=None) as slide:
        assert slide.dimensions == (100, 80)
        assert slide.thumbnail(50).image.shape == (40, 50, 3)
    monkeypatch.setenv(slides.MAX_IMAGE_PIXELS_ENV, "1000")
    with pytest.raises(SlideError, match="HISTOCLICK_MAX_IMAGE_PIXELS"):
        open_slide(path)
    monkeypatch.setenv(slides.MAX_IMAGE_PIXELS_ENV, "none")
    open_slide(path).close()
    monkeypatch.setenv(slides.MAX_IMAGE_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match="HISTOCLICK_MAX_IMAGE_PIXELS='lots' is not a number"):
        open_slide(path)


def test_read_region_output_is_bounded_by_the_limit(tmp_path):
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), np.full((80, 100, 3), 128, np.uint8))
    with open_slide(path, max_image_pixels=10_000) as slide:
        with pytest.raises(SlideError, match="200x200 region of small.png has 40,000 pixels"):
            slide.read_region(0, 0, 200, 200)
        with pytest.raises(ValueError, match="finite"):
            slide.read_region(float("nan"), 0, 10, 10)


def test_tiff_header_claiming_a_huge_image_is_a_clear_error(tmp_path):
    """Used to raise cv2.error without the file name."""
    path = tmp_path / "liar.tif"
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        patches = [(tags[name].valueoffset, tags[name].dtype) for name in ("ImageWidth", "ImageLength")]
    data = bytearray(path.read_bytes())
    for offset, dtype in patches:
        assert dtype == 4  # LONG: room for 10^6
        data[offset : offset + 4] = struct.pack("<I", 1_000_000)
    path.write_bytes(bytes(data))
    with pytest.raises(SlideError, match=r"liar\.tif.*1,000,000,000,000 pixels"):
        open_slide(path)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    path = tmp_path_factory.mktemp("slides") / "pyramid.tif"
    write_pyramidal_slide(path, 512, 512, (1, 4), seed=0)
    return path


@pytest.mark.parametrize("suffix, keep", [(".tif", 0.6), (".svs", 0.6), (".svs", 0.004)])
def test_truncated_slide_is_a_clear_error_not_a_plain_image(pyramid, tmp_path, suffix, keep):
    """Used to fail inside the decoder (DeflateError, or 'expected a uint8 image, got float64')
    or to open as a plain image without the slide's pyramid and metadata."""
    data = pyramid.read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(SlideError, match=rf"cut\{suffix} looks like a whole-slide image.*truncated"):
        open_slide(path)


def test_corrupt_tile_data_is_a_clear_error_and_the_slide_stays_usable(pyramid, tmp_path):
    path = tmp_path / "flipped.tif"
    data = bytearray(pyramid.read_bytes())
    with tifffile.TiffFile(pyramid) as tif:
        offset, count = tif.pages.first.dataoffsets[0], tif.pages.first.databytecounts[0]
    data[offset + 8 : offset + count] = bytes(np.random.default_rng(0).integers(0, 256, count - 8, np.uint8))
    path.write_bytes(bytes(data))
    with open_slide(path) as slide:
        with pytest.raises(SlideError, match=r"flipped\.tif: cannot read .* corrupt"):
            slide.read_region(0, 0, 64, 64)
        good = slide.read_region(300, 300, 64, 64).image  # tiles elsewhere still read
        with open_slide(pyramid) as intact:
            np.testing.assert_array_equal(good, intact.read_region(300, 300, 64, 64).image)


def test_chunked_resampling_equals_shrinking_at_once(tmp_path, monkeypatch):
    image = np.random.default_rng(0).integers(0, 256, (512, 768, 3), np.uint8)
    path = write_pyramidal_tiff(tmp_path / "flat.tif", image, downsamples=(1,))
    monkeypatch.setattr(slides, "_MAX_CHUNK_PIXELS", 64 * 64)  # many blocks on a small slide
    with open_slide(path) as slide:
        tile = slide.read_region(64, 32, 40, 30, downsample=8)
    expected = cv2.resize(image[32 : 32 + 240, 64 : 64 + 320], (40, 30), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(tile.image, expected)


_PEAK_SCRIPT = """
import resource, sys
from histoclick.slides import open_slide
slide = open_slide(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tile = slide.read_region(0, 0, 64, 64, downsample=64)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, tile.image.mean())
"""


def test_low_magnification_without_a_pyramid_level_has_bounded_memory(tmp_path):
    """Used to read the whole level-0 region at once (9.2 GB for 500x500 at 0.5x)."""
    image = np.full((4096, 4096, 3), 200, np.uint8)
    image[::7] = 90
    path = write_pyramidal_tiff(tmp_path / "flat.tif", image, downsamples=(1,))
    del image
    run = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path)], capture_output=True, text=True, check=True)
    peak_mib, mean = run.stdout.split()
    # Reading 4096^2 level-0 pixels at once peaks at ~180 MiB (RGBA + RGB); blocks at ~50.
    assert int(peak_mib) < 110
    assert abs(float(mean) - (200 * 6 + 90) / 7) < 1
