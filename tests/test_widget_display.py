"""What the ClickWidget draws: mask opacity and colour, hiding the mask and the saved outlines."""

import cv2
import numpy as np

from histoclick.evaluation.baselines import RegionGrowing
from histoclick.qupath import default_class_color
from histoclick.widgets import ClickWidget


def decode(png: bytes) -> np.ndarray:
    return cv2.cvtColor(
        cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )


def test_mask_opacity_colour_and_hiding(synthetic_slide, tmp_path):
    widget = ClickWidget(
        synthetic_slide.path,
        RegionGrowing(),
        geojson=tmp_path / "d.geojson",
        magnification=10,
        origin=(0, 0),
        size=128,
    )
    tile = widget.session.tile.image
    step = widget.click(60, 60)
    marker = np.zeros(step.mask.shape, bool)
    marker[50:71, 50:71] = True  # the click's marker disc lies in here
    # Mask pixels away from its edge and the click marker.
    inner = cv2.erode(step.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    inner &= ~marker
    assert inner.sum() > 100

    widget.class_dropdown.value = "Stroma"
    widget.opacity.value = 1.0
    stroma = default_class_color("Stroma")
    solid = decode(widget.image.value)[inner]
    np.testing.assert_array_equal(solid, np.tile(stroma, (len(solid), 1)))
    assert widget.state()["mask_color"] == list(stroma)

    widget.opacity.value = 0.0  # only the mask's edge stays
    np.testing.assert_array_equal(decode(widget.image.value)[inner], tile[inner])
    widget.opacity.value = 0.5
    half = decode(widget.image.value)[inner].astype(int)
    assert np.abs(half - (tile[inner].astype(int) + np.array(stroma)) / 2).max() <= 1

    widget.show_mask.value = False
    np.testing.assert_array_equal(decode(widget.image.value)[~marker], tile[~marker])
    widget.show_mask.value = True

    widget.accept()  # the saved object's outline is drawn, until hidden
    assert not np.array_equal(decode(widget.image.value), tile)
    widget.show_outlines.value = False
    np.testing.assert_array_equal(decode(widget.image.value), tile)
