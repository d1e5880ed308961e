"""histoclick: click-to-segment histopathology slides with the Segment Anything Model.

The top-level names are imported lazily, so ``import histoclick`` stays fast and needs neither
torch nor QuPath until they are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "open_slide": "histoclick.slides",
    "Slide": "histoclick.slides",
    "Tile": "histoclick.slides",
    "Click": "histoclick.clicks",
    "load_model": "histoclick.models",
    "SamModel": "histoclick.models",
    "ClickSession": "histoclick.session",
    "ClickResult": "histoclick.session",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .clicks import Click
    from .models import SamModel, load_model
    from .session import ClickResult, ClickSession
    from .slides import Slide, Tile, open_slide


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'histoclick' has no attribute {name!r}")
