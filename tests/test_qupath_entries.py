"""Project entries that are not one plain local file: listed with the reason, never read wrongly.

The odd entries are made the way QuPath makes them: rotated, cropped and sparse images by QuPath's
own image servers added through its project API, and the OMERO and Bio-Formats-series entries by
editing the records QuPath wrote in ``project.qpproj`` (their readers are not in the test core).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.geometry import box

from histoclick.cli import main
from histoclick.qupath import ImageUnreachableError, open_project
from histoclick.qupath.errors import UnsupportedImageError

OMERO_URI = "https://omero.example.org/webclient/?show=image-4321"


@pytest.fixture()
def odd_project(qupath, tmp_path, synthetic_slide) -> Path:
    slide = tmp_path / "slides" / "synthetic.tif"
    slide.parent.mkdir()
    shutil.copy(synthetic_slide.path, slide)
    second = tmp_path / "slides" / "second.png"
    cv2.imwrite(str(second), np.full((384, 512, 3), 180, np.uint8))

    from paquo.java import JClass

    project = open_project(tmp_path / "project", mode="x")
    (plain,) = project.add_image(slide)
    (other,) = project.add_image(second)
    server = plain.entry.java_object.getServerBuilder().build()
    other_server = other.entry.java_object.getServerBuilder().build()
    rotated = JClass("qupath.lib.images.servers.RotatedImageServer")
    cropped = JClass("qupath.lib.images.servers.CroppedImageServer")
    sparse = JClass("qupath.lib.images.servers.SparseImageServer")
    region = JClass("qupath.lib.regions.ImageRegion").createInstance
    built = {
        "rotated": rotated(server, rotated.Rotation.ROTATE_90),
        "cropped": cropped(server, region(100, 200, 300, 250, 0, 0)),
        "sparse": sparse.Builder()
        .serverRegion(region(0, 0, 2048, 1536, 0, 0), 1.0, server)
        .serverRegion(region(2100, 0, 512, 384, 0, 0), 1.0, other_server)
        .build(),
        "omero": server,
        "series": server,
    }
    java_project = project.paquo.java_object
    for name, image_server in built.items():
        java_project.addImage(image_server.getBuilder()).setImageName(name)
    java_project.syncChanges()

    qpproj = tmp_path / "project" / "project.qpproj"
    document = json.loads(qpproj.read_text())
    for record in document["images"]:
        builder = record["serverBuilder"]
        if record["imageName"] == "omero":  # as QuPath's OMERO extension records a web image
            builder.update(providerClassName="qupath.ext.omero.core.imageserver.OmeroImageServerBuilder",
                           uri=OMERO_URI, args=["--pixelAPI", "Web"])
        if record["imageName"] == "series":  # as Bio-Formats records the third image of a file
            builder.update(providerClassName="qupath.lib.images.servers.bioformats.BioFormatsServerBuilder",
                           args=["--series", "2"])
    qpproj.write_text(json.dumps(document, indent=2))
    return tmp_path / "project"


def test_listing_goes_on_past_entries_histoclick_cannot_read(odd_project):
    listing = open_project(odd_project).list_images().set_index("name")
    assert list(listing.index) == ["synthetic.tif", "second.png", "rotated", "cropped", "sparse", "omero", "series"]
    assert list(listing["readable"]) == [True, True, False, False, False, False, False]
    problems = listing["problem"]
    assert "'rotated' image" in problems["rotated"] and "'cropped' image" in problems["cropped"]
    assert "combines 2 images" in problems["sparse"] and listing["slide_path"]["sparse"] is None
    assert OMERO_URI in problems["omero"] and "file: URIs only" in problems["omero"]
    assert listing["uri"]["omero"] == OMERO_URI and listing["slide_path"]["omero"] is None
    assert "series 2" in problems["series"]
    assert (listing["width"]["synthetic.tif"], listing["height"]["synthetic.tif"]) == (2048, 1536)


def test_odd_entries_refuse_pixels_with_the_reason(odd_project):
    project = open_project(odd_project, mode="r+")
    for name in ("rotated", "cropped", "series"):
        with pytest.raises(UnsupportedImageError, match=f"image '{name}'.*add_image"):
            project.image(name).open_slide()
    with pytest.raises(UnsupportedImageError, match="'cropped' image"):
        project.image("cropped").read_region(0, 0, 64, 64)
    for name in ("omero", "sparse"):
        with pytest.raises(ImageUnreachableError, match=f"image '{name}'"):
            project.image(name).open_slide()
        with pytest.raises(ImageUnreachableError, match="save annotations"):
            project.image(name).add_annotations([(box(0, 0, 10, 10), "Tumor")])
    assert project.unsaved == 0
    # Annotations are in QuPath's frame, so a rotated entry still takes them.
    project.image("rotated").add_annotations([(box(0, 0, 10, 10), "Tumor")])
    project.save()
    assert len(open_project(odd_project).image("rotated").annotations()) == 1
    tile = project.image("synthetic.tif").read_region(64, 32, 16, 16, downsample=4)
    assert tile.origin == (64, 32) and tile.image.shape == (16, 16, 3)


def test_cli_lists_every_entry_with_its_problem(odd_project, capsys):
    assert main(["qupath", "list", str(odd_project)]) == 0
    out = capsys.readouterr().out
    assert "7 images" in out and "[0] synthetic.tif  2048x1536" in out
    assert "[5] omero" in out and OMERO_URI in out and "series 2" in out


def write_leica_scn(path: Path, image: np.ndarray, offset: tuple[int, int], nm_per_pixel: int = 250) -> Path:
    """A Leica SCN whose one brightfield image lies at ``offset`` (pixels) in a larger collection.

    OpenSlide reports that image's box as ``openslide.bounds-x/-y``: the case of QuPath's crop.
    """
    import tifffile

    height, width = image.shape[:2]
    cw, ch = (offset[0] + width + 500) * nm_per_pixel, (offset[1] + height + 500) * nm_per_pixel
    settings = (
        "<scanSettings><objectiveSettings><objective>{}</objective></objectiveSettings><illuminationSettings>"
        "<illuminationSource>brightfield</illuminationSource></illuminationSettings></scanSettings>"
    )
    description = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<scn xmlns="http://www.leica-microsystems.com/scn/2010/10/01">'
        f'<collection name="test" uuid="c1" sizeX="{cw}" sizeY="{ch}">'
        f'<image name="macro" uuid="m1"><view sizeX="{cw}" sizeY="{ch}" offsetX="0" offsetY="0" spacingZ="0"/>'
        f'{settings.format(1)}<pixels sizeX="64" sizeY="48"><dimension sizeX="64" sizeY="48" r="0" ifd="1"/>'
        '</pixels></image>'
        f'<image name="main" uuid="i1"><view sizeX="{width * nm_per_pixel}" sizeY="{height * nm_per_pixel}" '
        f'offsetX="{offset[0] * nm_per_pixel}" offsetY="{offset[1] * nm_per_pixel}" spacingZ="0"/>'
        f'{settings.format(40)}<pixels sizeX="{width}" sizeY="{height}">'
        f'<dimension sizeX="{width}" sizeY="{height}" r="0" ifd="0"/></pixels></image>'
        '</collection></scn>'
    )
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(image, tile=(128, 128), photometric="rgb", description=description, metadata=None)
        tiff.write(np.full((48, 64, 3), 128, np.uint8), tile=(16, 16), photometric="rgb", metadata=None)
    return path


def test_openslide_entries_read_pixels_in_qupaths_cropped_frame(qupath, tmp_path):
    """QuPath's OpenSlide reader shows an SCN's scanned box only, so its (0, 0) is the file's bounds corner."""
    pixels = np.random.default_rng(0).integers(0, 256, (384, 512, 3), np.uint8)
    slide = write_leica_scn(tmp_path / "scan.scn", pixels, offset=(1000, 600))
    project = open_project(tmp_path / "project", mode="x")
    project.add_image(slide)  # the test core's reader opens the first TIFF page: the same 512x384 box
    qpproj = tmp_path / "project" / "project.qpproj"
    document = json.loads(qpproj.read_text())
    document["images"][0]["serverBuilder"]["providerClassName"] = (
        "qupath.lib.images.servers.openslide.OpenslideServerBuilder")  # as QuPath 0.5 records it
    qpproj.write_text(json.dumps(document, indent=2))

    image = open_project(tmp_path / "project").image(0)
    assert image.slide_offset == (1000, 600)
    tile = image.read_region(10, 20, 64, 48, downsample=1)
    assert tile.origin == (10, 20)
    np.testing.assert_array_equal(tile.image, pixels[20:68, 10:74])
    with image.open_slide() as whole:  # the file's own frame, for comparison
        assert whole.dimensions[0] > 1512
