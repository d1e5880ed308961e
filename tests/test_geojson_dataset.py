"""QuPathDataset.from_geojson: samples come from annotations, not from QuPath's other objects."""

import json
import uuid

import pytest
from shapely.geometry import box, mapping

from histoclick.datasets.qupath import QuPathDataset


def write_objects(path, objects):
    features = [
        {
            "type": "Feature",
            "id": str(uuid.uuid4()),
            "geometry": mapping(geometry),
            "properties": {"objectType": kind, "classification": {"name": "Tumor", "color": [200, 0, 0]}},
        }
        for kind, geometry in objects
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return [f["id"] for f in features]


def test_only_annotations_become_samples_unless_asked(tmp_path, synthetic_slide):
    objects = [
        ("annotation", box(600, 600, 700, 700)),
        ("detection", box(710, 600, 760, 650)),  # next to it: inside the annotation's tile
        ("cell", box(600, 710, 640, 750)),
        ("tile", box(0, 0, 512, 512)),
    ]
    ids = write_objects(tmp_path / "export.geojson", objects)

    export = tmp_path / "export.geojson"
    dataset = QuPathDataset.from_geojson(synthetic_slide.path, export, "Tumor", tile_size=256)
    assert dataset.sample_ids == [f"{synthetic_slide.path.name}/{ids[0]}"]
    sample = dataset.load(dataset.sample_ids[0])
    assert sample.gt.sum() == 100 * 100
    assert not sample.ignore.any()  # the detection and the cell are not "other tumour" either

    both = QuPathDataset.from_geojson(
        synthetic_slide.path, export, "Tumor", object_types=("annotation", "detection"), tile_size=256
    )
    assert [s.split("/")[1] for s in both.sample_ids] == ids[:2]
    assert both.load(both.sample_ids[0]).ignore.sum() == 50 * 50

    with pytest.raises(ValueError, match="unknown object types.*'detections'"):
        QuPathDataset.from_geojson(synthetic_slide.path, export, "Tumor", object_types="detections")
