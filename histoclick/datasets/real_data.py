"""The real data next to the project, for notebooks and benchmarks: where it is, what to say.

The project's real data (``camelyon16_mini``: 32 CAMELYON16 tiles with tumour masks; the CMU-1
small-region Aperio slide; both CC0) lives outside the repository, at ``../shared/data`` from the
project's root, or wherever the environment variable ``HISTOCLICK_DATA`` points. It may be absent:
notebooks then fall back to synthetic data, and say so in one line.

A notebook's ``data`` parameter goes through :func:`choose_data`::

    choice = choose_data(data, CAMELYON16_MINI, "synthetic H&E-like tiles")
    print(choice.line)          # "data: camelyon16_mini (real CAMELYON16 tiles, CC0) from ..."
    if choice.path is None:     # synthetic data
        ...

and its model through :func:`describe_weights`, which gives a line to print for random weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from histoclick.models import SamModel

REAL_DATA_ENV = "HISTOCLICK_DATA"
# Items of the real data folder, relative to it, and how to name them to people.
CAMELYON16_MINI = "camelyon16_mini"
CMU_SLIDE = "slides/cmu_small_region.svs"
REAL_ITEMS = {
    CAMELYON16_MINI: "camelyon16_mini (real CAMELYON16 tiles, CC0)",
    CMU_SLIDE: "CMU-1-Small-Region (real Aperio slide, CC0)",
}
DATA_CHOICES = ("auto", "real", "synthetic")


@dataclass(frozen=True)
class DataChoice:
    """What a notebook's ``data`` parameter resolved to.

    path: the real item (a folder or slide file), or None for synthetic data.
    line: one line for people saying which data is used, and where real data was looked for.
    """

    path: Path | None
    line: str


def find_real_data() -> Path | None:
    """The real data folder, or None when there is none.

    ``$HISTOCLICK_DATA`` when set (it must then be a folder); otherwise ``../shared/data`` next to
    the project root (the folder holding ``pyproject.toml`` and ``histoclick/``), searched upwards
    from the working directory and from this package's own location (so a notebook or a kernel
    started anywhere in, or outside, a checkout finds it).
    """
    configured = os.environ.get(REAL_DATA_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"{REAL_DATA_ENV}={configured!r} is not a folder: point it at the folder holding "
                f"{CAMELYON16_MINI}/ and slides/, or unset it to look in ../shared/data"
            )
        return path
    return next((folder for folder in _shared_data_folders() if folder.is_dir()), None)


def choose_data(data: str, item: str, synthetic: str, label: str = "data") -> DataChoice:
    """Resolve a notebook's ``data`` parameter for one real ``item`` (e.g. :data:`CAMELYON16_MINI`).

    Args:
        data: ``"auto"`` (the real item when present, else synthetic data), ``"real"`` (the real
            item, or an error saying where it was looked for) or ``"synthetic"``.
        item: path of the item inside the real data folder, a key of :data:`REAL_ITEMS`.
        synthetic: what the synthetic fallback is, for the line (e.g. "synthetic H&E-like tiles").
        label: what the data is for, the line's first word(s) (e.g. "second dataset").
    """
    if data not in DATA_CHOICES:
        raise ValueError(f"data must be one of {', '.join(map(repr, DATA_CHOICES))}, got {data!r}")
    if data == "synthetic":
        return DataChoice(None, f"{label}: {synthetic} (data = 'synthetic')")
    folder = find_real_data()
    path = None if folder is None else folder / item
    if path is not None and path.exists():
        return DataChoice(path, f"{label}: {REAL_ITEMS[item]} from {path}")
    looked = [path] if path is not None else _shared_data_folders()
    where = (
        f"nothing at {' or '.join(map(str, looked))}"
        if looked
        else "no project root above the working directory or the installed package"
    )
    if data == "real":
        raise FileNotFoundError(
            f"data = 'real' but no real data found: {where}; set {REAL_DATA_ENV} to the real data "
            "folder, or use data = 'auto' to fall back to synthetic data"
        )
    return DataChoice(
        None, f"{label}: {synthetic} (no real data found: {where}; set {REAL_DATA_ENV} to use it)"
    )


def describe_weights(model: SamModel) -> str | None:
    """One line warning that ``model``'s weights are random, or None for trained weights.

    Random: ``vit_tiny`` (no official weights exist; fine-tuning it starts from random ones) or any
    model whose identity, or its image encoder's, is a random seed (``...:random-seed-N``).
    """
    from histoclick.models.checkpoints import OFFICIAL_CHECKPOINTS
    from histoclick.models.finetuned import RANDOM_PREFIX

    random = model.name not in OFFICIAL_CHECKPOINTS or any(
        RANDOM_PREFIX in identity for identity in (model.identity, model.encoder_identity)
    )
    if not random:
        return None
    return (
        f"weights: RANDOM ({model.name}, {model.source}): its masks and numbers say nothing about "
        "SAM's real performance; give a checkpoint (e.g. 'vit_b' or '~/sam_vit_b_01ec64.pth') "
        "for real ones"
    )


def _shared_data_folders() -> list[Path]:
    """``../shared/data`` of the project roots (folders holding ``pyproject.toml`` and
    ``histoclick/``) above the working directory and above this package, without repeats."""
    folders: list[Path] = []
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for root in (start, *start.parents):
            if (root / "pyproject.toml").is_file() and (root / "histoclick").is_dir():
                if root.parent / "shared" / "data" not in folders:
                    folders.append(root.parent / "shared" / "data")
                break
    return folders
