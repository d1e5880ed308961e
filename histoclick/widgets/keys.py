"""Keyboard shortcuts of the click widget: which key event (as ipyevents sends it) does what.

Keys reach the widget while the pointer is over its image (ipyevents listens on the page from
the moment the pointer enters the image until it leaves, and stops the browser's own use of
every key meanwhile, such as scrolling with the arrows); elsewhere, the sliders and dropdowns
take typing as usual.
"""

from __future__ import annotations

from typing import Any

# (key, needs Ctrl or Cmd) -> action name; the widget maps names to its methods.
SHORTCUTS: dict[tuple[str, bool], str] = {
    ("t", False): "toggle_mode",
    ("b", False): "brush",
    ("e", False): "eraser",
    ("z", True): "undo",
    ("Escape", False): "reset",
    ("Enter", False): "accept",
    ("ArrowLeft", False): "pan_left",
    ("ArrowRight", False): "pan_right",
    ("ArrowUp", False): "pan_up",
    ("ArrowDown", False): "pan_down",
    ("+", False): "zoom_in",
    ("=", False): "zoom_in",  # the "+" key without Shift on most layouts
    ("-", False): "zoom_out",
}

HELP = (
    "Keys (pointer over the image): <b>T</b> positive/negative, <b>B</b>/<b>E</b> brush/eraser "
    "(again: back to clicks), <b>Ctrl+Z</b> undo, "
    "<b>Esc</b> reset, <b>Enter</b> accept, <b>arrows</b> pan, <b>+</b>/<b>−</b> zoom"
)


def shortcut(event: dict[str, Any]) -> str | None:
    """The action of a ``keydown`` event, or None when the key has none."""
    if event.get("event") != "keydown":
        return None
    key = event.get("key", "")
    key = key.lower() if len(key) == 1 else key
    command = bool(event.get("ctrlKey") or event.get("metaKey"))
    return SHORTCUTS.get((key, command))
