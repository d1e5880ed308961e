"""The click widget's object list: what is saved for this slide, with Go to, Delete and Set class.

One row per object where the widget saves (its GeoJSON file, or its QuPath project image): class,
area in µm² (level-0 pixel area times the slide's mpp squared; "n/a" when the slide gives no pixel
size), the clicks it took (the ``histoclick clicks`` measurement) and who made it (its name, e.g.
"histoclick vit_tiny"). Selecting a row centres the viewport on that object. Delete and Set class
(to the class chosen in the widget) apply to histoclick's own objects, those with the metadata
``histoclick = "created"`` (:func:`histoclick.widgets.saving.created_by_histoclick`); others'
are read-only unless the widget was created with ``edit_foreign=True``. The changes themselves
go through :class:`histoclick.widgets.saving.SaveTarget`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import ipywidgets as widgets
import numpy as np

from histoclick.widgets.saving import created_by_histoclick

CLICKS = "histoclick clicks"


@dataclass(frozen=True)
class ObjectRow:
    """One saved object as the list shows it.

    ``area_um2``: None when the slide has no pixel size; ``clicks``: None without the
    ``histoclick clicks`` measurement; ``editable``: Delete and Set class are allowed (histoclick
    created it, or the widget edits others' objects too) and it has a UUID to address it by.
    """

    object_id: str | None
    classification: str | None
    area_um2: float | None
    clicks: int | None
    made_by: str
    histoclick: bool
    editable: bool

    def label(self, number: int) -> str:
        """``"1: Tumor · 1,234 µm² · 3 clicks · histoclick vit_tiny"`` (row ``number``, from 1)."""
        area = "area n/a" if self.area_um2 is None else f"{self.area_um2:,.0f} µm²"
        parts = [f"{number}: {self.classification or 'unclassified'}", area]
        if self.clicks is not None:
            parts.append(f"{self.clicks} click{'s' if self.clicks != 1 else ''}")
        parts.append(self.made_by)
        if not self.editable:
            parts.append("read-only")
        return " · ".join(parts)


def object_rows(
    frame: gpd.GeoDataFrame, mpp: float | None, *, edit_foreign: bool = False
) -> list[ObjectRow]:
    """The list's rows for the annotation table ``frame`` (level-0 pixels) of a slide with
    ``mpp`` micrometres per level-0 pixel (None: unknown)."""
    areas = frame.geometry.area.to_numpy() * (mpp or np.nan) ** 2
    rows = []
    for row, area in zip(frame.itertuples(index=False), areas):
        own = created_by_histoclick(row.metadata)
        clicks = row.measurements.get(CLICKS)
        rows.append(
            ObjectRow(
                object_id=row.id,
                classification=row.classification,
                area_um2=None if mpp is None else float(area),
                clicks=None if clicks is None or not np.isfinite(clicks) else int(clicks),
                made_by=row.name or ("histoclick" if own else "unnamed"),
                histoclick=own,
                editable=row.id is not None and (own or edit_foreign),
            )
        )
    return rows


class ObjectList(widgets.VBox):
    """The list (an ipywidgets ``Select``, one row per object) and its buttons.

    Args:
        mpp: micrometres per level-0 pixel of the slide (None: areas show "n/a").
        go_to: called with the row index when a row is selected or Go to is pressed.
        delete, reclassify: called with the selected object's UUID by Delete and Set class.
        guard: runs a UI action, showing its error to the user (the widget's ``_guard``).
        edit_foreign: Delete and Set class are offered for objects histoclick did not create.
    """

    def __init__(
        self,
        mpp: float | None,
        *,
        go_to: Callable[[int], Any],
        delete: Callable[[str], Any],
        reclassify: Callable[[str], Any],
        guard: Callable[..., None],
        edit_foreign: bool = False,
    ) -> None:
        self.mpp = mpp
        self.edit_foreign = edit_foreign
        self.rows: list[ObjectRow] = []
        self._frame: gpd.GeoDataFrame | None = None
        self._rebuilding = False
        unit = "µm²" if mpp is not None else "n/a: the slide gives no pixel size (mpp)"
        self.header = widgets.HTML(
            f"<b>Objects</b> <small>(class · area, {unit} · clicks · made by; select one to go "
            "to it)</small>"
        )
        self.select = widgets.Select(options=[], rows=5, layout=widgets.Layout(width="640px"))
        self.select.observe(self._on_select, "value")
        self.go_to_button = self._button(
            "Go to", "centre the viewport on the selected object", guard,
            self._selected_index, go_to,
        )
        self.delete_button = self._button(
            "Delete", "delete the selected object from the file or project", guard,
            self._selected_id, delete, style="danger",
        )
        self.reclassify_button = self._button(
            "Set class", "give the selected object the class chosen in the Class dropdown", guard,
            self._selected_id, reclassify,
        )
        self.note = widgets.HTML()
        self._go_to, self._guard = go_to, guard
        buttons = widgets.HBox(
            [self.go_to_button, self.reclassify_button, self.delete_button, self.note]
        )
        super().__init__([self.header, self.select, buttons])
        self._update_buttons()

    def show(self, frame: gpd.GeoDataFrame) -> None:
        """List the objects of ``frame`` (the annotation table, level-0 pixels); the selected
        object stays selected (by UUID) when it is still there. The same frame again is a no-op."""
        if frame is self._frame:
            return
        selected = self.selected()
        self._frame = frame
        self.rows = object_rows(frame, self.mpp, edit_foreign=self.edit_foreign)
        index = None
        if selected is not None and selected.object_id is not None:
            ids = [row.object_id for row in self.rows]
            index = ids.index(selected.object_id) if selected.object_id in ids else None
        self._rebuilding = True
        try:  # a new options list resets the value: no go-to for that
            self.select.options = [(row.label(i + 1), i) for i, row in enumerate(self.rows)]
            self.select.value = index
        finally:
            self._rebuilding = False
        self._update_buttons()

    def selected(self) -> ObjectRow | None:
        """The selected row, or None."""
        return None if self.select.value is None else self.rows[self.select.value]

    def _selected_index(self) -> int:
        if self.select.value is None:
            raise ValueError("no object selected: pick one in the object list first")
        return self.select.value

    def _selected_id(self) -> str:
        row = self.rows[self._selected_index()]
        if row.object_id is None:
            raise ValueError(
                "the selected object has no UUID in the file, so histoclick cannot address it; "
                "change it in QuPath"
            )
        return row.object_id

    def _on_select(self, change: dict[str, Any]) -> None:
        self._update_buttons()
        if not self._rebuilding and change["new"] is not None:
            self._guard(self._go_to, change["new"])

    def _update_buttons(self) -> None:
        row = self.selected()
        editable = row is not None and row.editable
        self.go_to_button.disabled = row is None
        self.delete_button.disabled = self.reclassify_button.disabled = not editable
        if row is None:
            self.note.value = f"<small>{len(self.rows)} object(s)</small>"
        elif row.object_id is None:
            self.note.value = "<small>read-only: this object has no UUID in the file</small>"
        elif not editable:
            self.note.value = (
                f"<small>read-only: {row.made_by} is not histoclick's (create the widget with "
                "edit_foreign=True to change others' objects)</small>"
            )
        else:
            self.note.value = ""

    @staticmethod
    def _button(
        label: str,
        tooltip: str,
        guard: Callable[..., None],
        target: Callable[[], Any],
        action: Callable[[Any], Any],
        style: str = "",
    ) -> widgets.Button:
        button = widgets.Button(
            description=label,
            tooltip=tooltip,
            button_style=style,
            layout=widgets.Layout(width="auto"),
        )
        button.on_click(lambda _: guard(lambda: action(target())))
        return button
