"""PAIP 2019: XML layers checked against the mask TIFFs, dropped cases logged, region protocol
on mask TIFFs (a real pyramidal TIFF as the slide)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import tifffile
from test_datasets_xml import imagescope, rect

from histoclick.datasets.paip import PaipDataset, layer_agreement, sample_mask

WHOLE = (200, 200, 1200, 1000)  # level-0 rectangles on the 2048 x 1536 synthetic slide
VIABLE = (400, 400, 800, 800)
APART = (1500, 1100, 1650, 1250)  # a second whole-tumour region, away from the first


def rect_mask(*rects):
    mask = np.zeros((1536, 2048), np.uint8)
    for x0, y0, x1, y1 in rects:
        mask[y0:y1, x0:x1] = 255
    return mask


def write_case(root, case, synthetic_slide, *, xml_whole=WHOLE, whole_tif=(WHOLE,), viable_tif=(VIABLE,)):
    folder = root / case
    folder.mkdir(parents=True)
    os.symlink(synthetic_slide.path, folder / f"{case}.svs")
    (folder / f"{case}.xml").write_text(imagescope({
        "1": [(rect(*xml_whole), False)], "2": [(rect(*VIABLE), False)]
    }))
    if whole_tif is not None:
        tifffile.imwrite(folder / f"{case}_whole.tif", rect_mask(*whole_tif))
    if viable_tif is not None:
        tifffile.imwrite(folder / f"{case}_viable.tif", rect_mask(*viable_tif))
    return folder


def test_layers_that_agree_pass_and_the_agreement_is_an_iou(tmp_path, synthetic_slide):
    folder = write_case(tmp_path, "01_01_0083", synthetic_slide)
    dataset = PaipDataset(tmp_path, tile_size=64)
    assert dataset.sample_ids  # planning read the geometry, after the check
    xml = folder / "01_01_0083.xml"
    assert layer_agreement(xml, folder / "01_01_0083_whole.tif", "whole", (2048, 1536)) == 1.0
    # The XML's whole tumour against the viable TIFF: 400 x 400 of 1000 x 800.
    assert layer_agreement(xml, folder / "01_01_0083_viable.tif", "whole", (2048, 1536)) == pytest.approx(0.2)


def test_a_moderate_disagreement_warns(tmp_path, synthetic_slide):
    write_case(tmp_path, "01_01_0083", synthetic_slide, xml_whole=(200, 200, 1200, 900))
    dataset = PaipDataset(tmp_path, tile_size=64)
    with pytest.warns(UserWarning, match=r"whole layer of .*01_01_0083.xml and .*_whole.tif disagree \(IoU 0.875\)"):
        dataset.sample_ids


def test_swapped_tiffs_are_refused_with_the_fix(tmp_path, synthetic_slide):
    write_case(tmp_path, "01_01_0083", synthetic_slide, whole_tif=(VIABLE,), viable_tif=(WHOLE,))
    dataset = PaipDataset(tmp_path, tile_size=64)
    with pytest.raises(ValueError, match=r"IoU 0.200\); it matches 01_01_0083_viable.tif better: are the"):
        dataset.sample_ids
    assert PaipDataset(tmp_path, tile_size=64, check_layers=False).sample_ids  # the user's choice


def test_known_swapped_case_is_read_swapped_back_and_passes(tmp_path, synthetic_slide):
    # 01_01_0107's published TIFFs are swapped; histoclick reads them swapped back.
    write_case(tmp_path, "01_01_0107", synthetic_slide, whole_tif=(VIABLE,), viable_tif=(WHOLE,))
    dataset = PaipDataset(tmp_path, source="mask", tile_size=64)
    sample = dataset.load(dataset.sample_ids[0])
    assert sample.meta["region_bounds"][0] == pytest.approx(200.0, abs=8)  # the whole tumour


def test_duplicate_cases_and_unannotated_slides_are_dropped_and_logged(tmp_path, synthetic_slide, caplog):
    write_case(tmp_path, "01_01_0083", synthetic_slide)
    for scan in ("scan1", "scan2"):  # the same case id twice, e.g. the two 01_01_0111 rescans
        (tmp_path / scan).mkdir()
        (tmp_path / scan / "01_01_0111.svs").touch()
        (tmp_path / scan / "01_01_0111.xml").touch()
    (tmp_path / "01_01_0200.svs").touch()  # no annotation beside it
    with caplog.at_level(logging.WARNING, logger="histoclick.datasets.paip"):
        dataset = PaipDataset(tmp_path, tile_size=64)
    assert list(dataset.cases) == ["01_01_0083"]
    assert sorted(dataset.dropped) == sorted(
        str(p) for p in (tmp_path / "scan1" / "01_01_0111.svs", tmp_path / "scan2" / "01_01_0111.svs",
                         tmp_path / "01_01_0200.svs")
    )
    assert "case 01_01_0111 has 2 slides" in dataset.dropped[str(tmp_path / "scan1" / "01_01_0111.svs")]
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 3 and all("dropped" in m for m in logged)


def test_region_protocol_on_mask_tiffs(tmp_path, synthetic_slide):
    write_case(tmp_path, "01_01_0083", synthetic_slide, whole_tif=(WHOLE, APART), viable_tif=None)
    dataset = PaipDataset(tmp_path, source="mask", tile_size=64)  # x5: 8 level-0 px per pixel
    level0 = rect_mask(WHOLE, APART)
    assert [i.rpartition("#")[2] for i in dataset.sample_ids] == ["r0", "r1"]
    for sample_id, target, other in zip(dataset.sample_ids, (WHOLE, APART), (APART, WHOLE)):
        sample = dataset.load(sample_id)
        shape, origin = sample.gt.shape, sample.meta["origin"]
        expected = sample_mask(rect_mask(target), origin, 8.0, shape)
        np.testing.assert_array_equal(sample.gt, expected)
        tumour = sample_mask(level0, origin, 8.0, shape)
        np.testing.assert_array_equal(sample.gt | (sample.ignore if sample.ignore is not None else False), tumour)
        assert not sample.gt.all()  # WHOLE is larger than the 512-pixel tile: a boundary tile
    assert dataset.load(dataset.sample_ids[0]).meta["placement"] == "boundary"
