"""Jupyter widgets: :class:`ClickWidget` segments a slide by clicks (SAM or any interactive
method), saved for QuPath."""

from histoclick.widgets.click_widget import DEFAULT_CLASSES, Accepted, ClickWidget

__all__ = ["DEFAULT_CLASSES", "Accepted", "ClickWidget"]
