"""Keyboard shortcuts of the ClickWidget, sent as the keydown messages ipyevents delivers."""

from histoclick.evaluation.baselines import RegionGrowing
from histoclick.qupath import read_geojson
from histoclick.widgets import ClickWidget
from histoclick.widgets.keys import HELP


def press(widget, key, ctrl=False):
    widget._keys._dom_handlers(
        {"event": "keydown", "key": key, "ctrlKey": ctrl, "metaKey": False, "shiftKey": False}
    )


def test_shortcuts_toggle_undo_reset_accept_pan_and_zoom(synthetic_slide, tmp_path):
    out = tmp_path / "keys.geojson"
    widget = ClickWidget(
        synthetic_slide.path, RegionGrowing(), geojson=out, magnification=10, origin=(0, 0), size=128
    )
    assert "Ctrl+Z" in widget.help.value and widget.help.value.endswith(f"{HELP}</small>")
    widget.click(60, 60)
    press(widget, "T")
    assert widget.mode.value is False
    widget.handle_click(10, 10)
    assert [c.is_positive for c in widget.session.clicks] == [True, False]
    press(widget, "z")  # without Ctrl: no undo
    assert len(widget.session.clicks) == 2
    press(widget, "z", ctrl=True)
    assert len(widget.session.clicks) == 1
    press(widget, "Enter")
    assert widget.last_error is None and len(read_geojson(out)) == 1
    widget.click(60, 60)
    press(widget, "Escape")
    assert widget.session.clicks == []

    press(widget, "ArrowRight")
    assert widget.viewport.origin == (512, 0)
    press(widget, "ArrowDown")
    assert widget.viewport.origin == (512, 512)
    press(widget, "ArrowUp")
    press(widget, "ArrowLeft")
    assert widget.viewport.origin == (0, 0)
    press(widget, "ArrowLeft")  # at the slide's edge: said in the status line, nothing moves
    assert "slide's edge" in widget.last_error and widget.viewport.origin == (0, 0)
    press(widget, "+")
    assert widget.viewport.downsample == 2.0
    press(widget, "-")
    press(widget, "-")
    assert widget.viewport.downsample == 8.0
    press(widget, "q")  # no shortcut
    assert widget.last_error is None and widget.viewport.downsample == 8.0
