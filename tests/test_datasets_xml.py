"""CAMELYON16 ASAP XML and PAIP ImageScope XML / mask TIFFs, rasterised into tumour-centred tiles."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from histoclick.datasets.camelyon16 import Camelyon16Dataset, read_asap_annotations, read_asap_xml
from histoclick.datasets.paip import PaipDataset, read_imagescope_xml


def asap_annotation(group, points, order=None):
    order = order or range(len(points))
    coordinates = "".join(
        f'<Coordinate Order="{i}" X="{points[i][0]}" Y="{points[i][1]}"/>' for i in order
    )
    return (
        f'<Annotation Name="a" Type="Polygon" PartOfGroup="{group}" Color="#F4FA58">'
        f"<Coordinates>{coordinates}</Coordinates></Annotation>"
    )


def write_asap(path, *annotations):
    path.write_text(
        "<?xml version=\"1.0\"?><ASAP_Annotations><Annotations>"
        + "".join(annotations)
        + "</Annotations><AnnotationGroups/></ASAP_Annotations>"
    )
    return path


def rect(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def test_asap_groups_tumour_and_hole(tmp_path):
    path = write_asap(
        tmp_path / "tumor_001.xml",
        asap_annotation("Tumor", rect(0, 0, 100, 100), order=[2, 0, 3, 1]),  # shuffled Order
        asap_annotation("_1", rect(200, 0, 210, 10)),
        asap_annotation("_2", rect(20, 20, 40, 40)),
        asap_annotation("Exclusion", rect(60, 60, 70, 70)),  # named exclusion group: a hole too
        asap_annotation("None", rect(300, 300, 400, 400)),  # not a tumour group: warned, unused
        asap_annotation("Tumor", [(5, 5), (6, 6)]),  # two vertices: no area, ignored
    )
    with pytest.warns(UserWarning, match="groups 'None' \\(1 polygons\\) are neither tumour"):
        annotations = read_asap_annotations(path)
    region = annotations.tumour
    assert region.area == pytest.approx(100 * 100 - 20 * 20 - 10 * 10 + 10 * 10)
    assert not region.contains(_point(30, 30)) and region.contains(_point(10, 10))
    assert not region.contains(_point(65, 65))
    assert annotations.exclusion.area == pytest.approx(20 * 20 + 10 * 10)
    with pytest.warns(UserWarning, match="'None'"):
        assert read_asap_xml(path).equals(region)


def _point(x, y):
    from shapely.geometry import Point

    return Point(x, y)


def test_camelyon16_tile_rasterises_the_hole_as_ignored(tmp_path, synthetic_slide):
    # synthetic_slide: 2048x1536 level-0 pixels at 40x, so x10 tiles have downsample 4.
    slides, annotations = tmp_path / "slides", tmp_path / "annotations"
    slides.mkdir()
    annotations.mkdir()
    shutil.copy(synthetic_slide.path, slides / "tumor_001.tif")
    shutil.copy(synthetic_slide.path, slides / "normal_001.tif")  # no XML: not used
    write_asap(
        annotations / "tumor_001.xml",
        asap_annotation("Tumor", rect(400, 400, 1200, 1000)),
        asap_annotation("Exclusion", rect(600, 600, 800, 800)),
        asap_annotation("_0", rect(1800, 1300, 1810, 1310)),  # 100 px^2 = 6 tile px: too small
    )
    dataset = Camelyon16Dataset(slides, annotations, tile_size=128, protocol="tiles")
    assert list(dataset.dropped) == [str(slides / "normal_001.tif")]
    # Centroid of the square minus its hole: x = (480000*800 - 40000*700) / 440000 = 809.09,
    # y = 700; the tile spans 128*4 = 512 level-0 pixels, so its origin is (553, 444).
    assert dataset.sample_ids == ["tumor_001@553,444"]
    sample = dataset.load("tumor_001@553,444")
    assert sample.image.shape == (128, 128, 3) and sample.image.dtype == np.uint8
    assert sample.meta["downsample"] == 4.0 and sample.meta["origin"] == (553, 444)
    # Pixel (i, j) has its centre at level 0 (555 + 4j, 446 + 4i): the hole 600..800 covers
    # columns 12..61 and rows 39..88: not tumour and ignored; everything else is tumour.
    hole = np.zeros((128, 128), bool)
    hole[39:89, 12:62] = True
    np.testing.assert_array_equal(sample.gt, ~hole)
    np.testing.assert_array_equal(sample.ignore, hole)


def imagescope(regions_by_id):
    annotations = []
    for annotation_id, regions in regions_by_id.items():
        body = "".join(
            f'<Region Id="{k}" NegativeROA="{int(negative)}"><Vertices>'
            + "".join(f'<Vertex X="{x}" Y="{y}" Z="0"/>' for x, y in points)
            + "</Vertices></Region>"
            for k, (points, negative) in enumerate(regions)
        )
        annotations.append(f'<Annotation Id="{annotation_id}"><Regions>{body}</Regions></Annotation>')
    return "<Annotations>" + "".join(annotations) + "</Annotations>"


def test_paip_xml_negative_regions_are_holes(tmp_path):
    path = tmp_path / "01_01_0083.xml"
    path.write_text(imagescope({
        "1": [(rect(0, 0, 100, 100), False), (rect(10, 10, 30, 30), True)],
        "2": [(rect(50, 50, 60, 60), False)],
    }))
    assert read_imagescope_xml(path, "whole").area == pytest.approx(10000 - 400)
    assert read_imagescope_xml(path, "viable").area == pytest.approx(100)
    path.write_text(imagescope({"2": [(rect(0, 0, 1, 1), False)]}))
    with pytest.raises(ValueError, match="Id=\"1\""):
        read_imagescope_xml(path, "whole")


def test_paip_mask_tiffs_give_the_same_tiles_as_the_level0_mask(tmp_path, synthetic_slide):
    case = tmp_path / "01_01_0083"
    case.mkdir()
    shutil.copy(synthetic_slide.path, case / "01_01_0083.svs")
    tifffile.imwrite(case / "01_01_0083_whole.tif", synthetic_slide.mask.astype(np.uint8))
    dataset = PaipDataset(tmp_path, source="mask", tile_size=64, tiles_per_slide=2, protocol="tiles")
    assert 1 <= len(dataset) <= 2
    for sample in dataset:
        x0, y0 = (int(v) for v in sample.meta["origin"])
        assert sample.meta["downsample"] == 8.0  # x5 from a 40x slide
        assert 0 <= x0 <= 2048 - 512 and 0 <= y0 <= 1536 - 512  # kept inside the slide
        centres = np.arange(64) * 8 + 4  # level-0 pixel under each tile pixel's centre
        np.testing.assert_array_equal(sample.gt, synthetic_slide.mask[np.ix_(y0 + centres, x0 + centres)])
        assert sample.gt.any()


def test_missing_annotations_are_clear_errors(tmp_path):
    (tmp_path / "slides").mkdir()
    (tmp_path / "annotations").mkdir()
    with pytest.raises(FileNotFoundError, match="ASAP XML"):
        Camelyon16Dataset(tmp_path / "slides", tmp_path / "annotations")
    with pytest.raises(FileNotFoundError, match="01_01_0083.xml"):
        PaipDataset(tmp_path)
