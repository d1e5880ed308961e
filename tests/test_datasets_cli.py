"""The shared dataset options: ``evaluate --objects``, ``finetune --paip`` / ``--camelyon16``."""

from __future__ import annotations

import csv
import os

import cv2
import pytest
from test_datasets_objects import labelled_tile
from test_datasets_xml import asap_annotation, imagescope, rect, write_asap

from histoclick.cli import data_args, main
from histoclick.datasets import objects, slide_tiles
from histoclick.datasets.synthetic import make_tile


def test_choices_match_the_library():
    assert data_args.OBJECT_MODES == objects.OBJECT_MODES
    assert data_args.AREA_UNITS == objects.AREA_UNITS
    assert data_args.SLIDE_PROTOCOLS == slide_tiles.SLIDE_PROTOCOLS


def records_of(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_evaluate_objects_records_each_component_with_its_id(tmp_path):
    (tmp_path / "tiles" / "images").mkdir(parents=True)
    (tmp_path / "tiles" / "masks").mkdir()
    image, _ = make_tile(seed=1, size=128)
    cv2.imwrite(str(tmp_path / "tiles" / "images" / "t1.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "tiles" / "masks" / "t1.png"), labelled_tile())
    code = main([
        "evaluate", "--data", str(tmp_path / "tiles"), "--objects", "components",
        "--min-object-area", "10", "--methods", "region_growing", "--max-clicks", "2",
        "--out", str(tmp_path / "out"), "--no-plot",
    ])
    assert code == 0
    records = records_of(tmp_path / "out" / "records.csv")
    assert {r["dataset"] for r in records} == {"tiles[components]"}
    assert sorted({(r["sample"], r["object_id"]) for r in records}) == [("t1#c1", "c1"), ("t1#c2", "c2")]
    assert len(records) == 4  # two clicks per object


def test_evaluate_camelyon16_records_regions_with_tile_ids(tmp_path, synthetic_slide):
    slides, xmls = tmp_path / "slides", tmp_path / "xmls"
    slides.mkdir()
    xmls.mkdir()
    os.symlink(synthetic_slide.path, slides / "tumor_001.tif")
    write_asap(
        xmls / "tumor_001.xml",
        asap_annotation("Tumor", rect(400, 400, 600, 600)),
        asap_annotation("_1", rect(700, 400, 760, 460)),  # in the first region's tile: ignored there
    )
    code = main([
        "evaluate", "--camelyon16", str(slides), str(xmls), "--tile-size", "128",
        "--methods", "region_growing", "--max-clicks", "1", "--out", str(tmp_path / "out"), "--no-plot",
    ])
    assert code == 0
    records = records_of(tmp_path / "out" / "records.csv")
    # Both regions are small: each centred in its 512-level-0-pixel tile (x10 on a 40x slide).
    assert sorted((r["sample"], r["object_id"]) for r in records) == [
        ("tumor_001@244,244#r0", "r0"), ("tumor_001@474,174#r1", "r1")
    ]


def test_finetune_trains_on_paip_slides_split_by_slide(tmp_path, synthetic_slide, capsys):
    # Three cases on the same synthetic slide (x5: 64-pixel tiles of 512 level-0 pixels); the
    # first has two tumour rectangles, the others one.
    regions = {"01_01_0083": [(200, 100), (200, 900)], "01_01_0084": [(800, 400)], "01_01_0085": [(1400, 400)]}
    for case, corners in regions.items():
        folder = tmp_path / "paip" / case
        folder.mkdir(parents=True)
        os.symlink(synthetic_slide.path, folder / f"{case}.svs")
        areas = [(rect(x, y, x + 400, y + 400), False) for x, y in corners]
        (folder / f"{case}.xml").write_text(imagescope({"1": areas}))
    code = main([
        "finetune", "--paip", str(tmp_path / "paip"), "--tile-size", "64", "--out", str(tmp_path / "run"),
        "--base", "vit_tiny", "--epochs", "1", "--batch-size", "2", "--augment", "none",
        "--val-fraction", "0.2", "--test-fraction", "0.2", "--max-extra-clicks", "0", "--device", "cpu",
        "--val-clicks", "1", "--no-eval",
    ])
    assert code == 0, capsys.readouterr().err
    split = {r["id"]: r["subset"] for r in records_of(tmp_path / "run" / "split.csv")}
    # Tiles centred on each 400 x 400 rectangle (the tiles protocol), named <case>@<x>,<y>.
    assert sorted(split) == [
        "01_01_0083@144,44", "01_01_0083@144,844", "01_01_0084@744,344", "01_01_0085@1344,344"
    ]
    # The split is by slide: both tiles of 01_01_0083 on the same side, one slide per subset.
    assert split["01_01_0083@144,44"] == split["01_01_0083@144,844"]
    assert sorted(set(split.values())) == ["test", "train", "val"]
    assert (tmp_path / "run" / "best.pt").is_file()


def test_finetune_needs_exactly_one_dataset(tmp_path, synthetic_sample, capsys):
    slides, xmls = tmp_path / "slides", tmp_path / "xmls"
    slides.mkdir()
    xmls.mkdir()
    (slides / "tumor_001.tif").touch()
    write_asap(xmls / "tumor_001.xml", asap_annotation("Tumor", rect(0, 0, 10, 10)))
    code = main(["finetune", "--data", str(synthetic_sample), "--camelyon16", str(slides), str(xmls), "--base", "vit_tiny",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    assert "finetune trains on exactly one dataset, got 2" in capsys.readouterr().err
    assert main(["finetune", "--base", "vit_tiny", "--out", str(tmp_path / "run")]) == 2
    assert "got 0: give one of --data DIR" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--slide-protocol", "--objects", "--min-object-area"])
def test_evaluation_only_options_are_not_finetune_options(option, capsys):
    with pytest.raises(SystemExit):
        main(["finetune", option, "x", "--out", "o"])
    assert "unrecognized arguments" in capsys.readouterr().err
