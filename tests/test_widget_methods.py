"""Any interactive method drives the ClickWidget: the weight-free baselines as SAM does."""

import numpy as np
import pytest

from histoclick.evaluation.baselines import GrabCut, RegionGrowing
from histoclick.qupath import read_geojson
from histoclick.widgets import ClickWidget


@pytest.mark.parametrize("method", [RegionGrowing(), GrabCut()], ids=lambda m: m.name)
def test_a_baseline_method_segments_and_saves_in_the_widget(synthetic_slide, method, tmp_path):
    out = tmp_path / "objects.geojson"
    widget = ClickWidget(
        synthetic_slide.path, method, geojson=out, magnification=10, origin=(0, 0), size=128
    )
    tissue = np.argwhere(widget.session.tile.image.mean(axis=2) < 200)
    row, column = tissue[len(tissue) // 2]
    step = widget.click(int(column), int(row))
    assert step.mask[row, column] and step.predicted_iou is None
    assert widget.state()["method"] == method.name and widget.state()["mask_pixels"] > 0
    assert "predicted IoU" not in widget.status.value
    widget.click(0, 0, positive=False)
    widget.undo()
    assert len(widget.session.clicks) == 1
    accepted = widget.accept()

    (saved,) = read_geojson(out).itertuples()
    assert saved.id == accepted.object_id and saved.name == f"histoclick {method.name}"
    assert saved.geometry.equals(accepted.geometry) and saved.geometry.area > 0
    # No model estimate of the IoU: the measurement is left out rather than made up.
    assert saved.measurements == {"histoclick clicks": 1.0, "histoclick viewports": 1.0}


def test_the_widget_refuses_what_is_not_a_method(synthetic_slide):
    with pytest.raises(TypeError, match="set_image\\(image\\) and predict"):
        ClickWidget(synthetic_slide.path, object(), magnification=10)
    with pytest.raises(ValueError, match="SAM model only"):
        ClickWidget(synthetic_slide.path, RegionGrowing(), magnification=10, cache_dir="x")
