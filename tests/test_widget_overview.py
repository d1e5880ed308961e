"""The widget's overview thumbnail and its first viewport: a real pyramidal TIFF read by OpenSlide,
the weight-free RegionGrowing method, the PNGs the widget sends and the event dicts ipyevents sends.

The slide is 2048 x 1536 (thumbnail 256 x 192, 8 level-0 pixels per thumbnail pixel). Tissue:
x < 614 on every row, and the whole block x >= 1024, y < 1024. On the 1024-pixel grid (viewports of
256 tile pixels at downsample 4) the first tissue tile in row-major order, (0, 0), is 60 % tissue;
(1024, 0) is all tissue.
"""

import math

import cv2
import numpy as np
import pytest

from histoclick.datasets.synthetic import write_pyramidal_tiff
from histoclick.evaluation.baselines import RegionGrowing
from histoclick.slides import open_slide
from histoclick.widgets import ClickWidget
from histoclick.widgets.navigation import Navigator
from histoclick.widgets.overview import CSS_CLASS, MIN_RECTANGLE, VIEWPORT_COLOR
from histoclick.widgets.viewport import Viewport

PINK = (230, 160, 200)
THUMB_DS = 8.0


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    image = np.full((1536, 2048, 3), 255, np.uint8)
    image[:, :614] = PINK
    image[:1024, 1024:] = PINK
    path = tmp_path_factory.mktemp("overview") / "tissue.tif"
    write_pyramidal_tiff(path, image, (1, 4, 16), objective_power=40.0, mpp=0.25)
    with open_slide(path) as opened:
        yield opened


@pytest.fixture
def widget(slide, tmp_path):
    made = ClickWidget(slide, RegionGrowing(), geojson=tmp_path / "objects.geojson", size=256, downsample=4)
    yield made
    made.close()


def decode(png: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def overview_click(widget, x, y, shown, left=10.5, top=20.25):
    """The message ipyevents sends for a click at CSS offset (x, y) on the overview shown at
    (left, top), ``shown`` = (width, height) CSS pixels."""
    widget._overview_events._dom_handlers(
        {
            "event": "click",
            "button": 0,
            "clientX": left + x,
            "clientY": top + y,
            "boundingRectLeft": left,
            "boundingRectTop": top,
            "boundingRectWidth": shown[0],
            "boundingRectHeight": shown[1],
        }
    )


def test_first_viewport_has_the_most_tissue_and_ties_go_row_major(slide):
    fractions = slide.tissue_fractions(256, downsample=4)
    assert list(fractions) == [(0, 0), (1024, 0), (0, 1024), (1024, 1024)]  # row-major grid
    assert fractions[(0, 0)] == pytest.approx(0.6, abs=0.02)
    assert fractions[(1024, 0)] > 0.99  # the tissue's corner, rounded by the mask's opening
    # The first tissue tile in row-major order is not the one with the most tissue.
    assert slide.tissue_tiles(256, downsample=4)[0] == (0, 0)
    assert slide.tissue_tiles(256, downsample=4, min_tissue=0.7) == [(1024, 0)]
    assert Navigator(slide, 256, 4.0).viewport.origin == (1024, 0)
    # On the 512-pixel grid several viewports are all tissue: the first of them, row by row.
    navigator = Navigator(slide, 128, 4.0)
    full = [o for o, f in navigator.tissue_fractions(4.0).items() if f == 1.0]
    assert len(full) > 1 and navigator.viewport.origin == full[0] == (0, 0)
    assert Navigator(slide, 256, 4.0, origin=(0, 1024)).viewport.origin == (0, 1024)


def test_overview_draws_the_viewport_and_a_click_centres_it_there(widget):
    overview = widget.overview
    assert CSS_CLASS in overview.image._dom_classes
    assert overview.downsample == THUMB_DS
    assert (overview.thumbnail.width, overview.thumbnail.height) == (256, 192)
    assert (overview.image.width, overview.image.height) == ("256", "192")  # shown unscaled
    assert widget.viewport.origin == (1024, 0)  # the most tissue, at once in the widget
    assert widget.state()["overview"]["rectangle"] == [128, 0, 255, 127]

    picture = decode(overview.image.value)
    thumbnail = overview.thumbnail.image
    assert picture.shape == thumbnail.shape
    edges = np.zeros(picture.shape[:2], bool)
    edges[0:128, [128, 255]] = True
    edges[[0, 127], 128:256] = True
    assert (picture[edges] == VIEWPORT_COLOR).all()
    assert np.array_equal(picture[~edges], thumbnail[~edges])  # nothing else drawn

    # A click on thumbnail pixel (100, 90), the overview shown 1.5 times enlarged at a fractional
    # CSS position: the viewport is centred on that pixel's level-0 point.
    overview_click(widget, 100.5 * 1.5, 90.5 * 1.5, shown=(384.0, 288.0))
    assert widget.last_error is None
    minx, miny, maxx, maxy = widget.viewport.bounds
    centre = ((minx + maxx) / 2, (miny + maxy) / 2)
    target = overview.to_level0(100.5, 90.5)
    assert target == (804.0, 724.0)
    assert all(abs(c - t) <= THUMB_DS for c, t in zip(centre, target))
    assert tuple(math.floor(v) for v in overview.to_thumbnail(*centre)) == (100, 90)
    left, top, right, bottom = widget.state()["overview"]["rectangle"]
    assert (left, top) == (minx // 8, miny // 8) and (right, bottom) == (
        math.ceil(maxx / 8) - 1,
        math.ceil(maxy / 8) - 1,
    )
    assert (decode(overview.image.value)[top, left:right + 1] == VIEWPORT_COLOR).all()

    widget.jump_to_overview(0.5, 0.5)  # near the corner: the viewport stays on the slide
    assert widget.viewport.origin == (0, 0)
    assert widget.state()["overview"]["rectangle"] == [0, 0, 127, 127]


def test_overview_shows_saved_objects_in_their_class_colour(widget):
    def coloured(color):
        distance = np.abs(decode(widget.overview.image.value).astype(int) - color).sum(axis=2)
        return int((distance < 40).sum())

    color = widget.state()["mask_color"]
    assert coloured(color) == 0
    png = widget.overview.image.value
    widget.click(128, 128)  # a click redraws the tile, not the unchanged overview
    assert widget.overview.image.value is png
    widget.accept()
    assert coloured(color) > 20


def test_the_rectangle_of_a_small_viewport_stays_visible_on_the_thumbnail(widget):
    corner = Viewport((2040, 1530), 4, 1.0, (2048, 1536))  # 4 level-0 pixels, half a thumb pixel
    assert widget.overview.viewport_rectangle(corner) == (256 - MIN_RECTANGLE, 191 - 4, 255, 191)
    with pytest.raises(ValueError, match="displayed size"):
        widget.overview.display_to_thumbnail(1, 1, (0, 10))
