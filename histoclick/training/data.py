"""Training data: annotated tiles grouped by slide, split by group, prepared the way SAM sees them.

A tile's image is resized so its long side is SAM's input size (1024) and padded at the bottom
and right, as :meth:`SamModel.embed` does. Its mask is brought to the same padded frame and
shrunk to SAM's low-resolution mask frame (256x256 for a 1024 input), where losses are
computed and training clicks are drawn; pixels of the padding are marked invalid.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from histoclick.embeddings import EmbeddingCache
from histoclick.models.sam_model import SamModel

AUGMENTATIONS = {"none": 1, "dihedral": 8}  # name -> number of variants of each tile
LOW_RES_SCALE = 4  # input pixels per pixel of SAM's low-resolution mask frame

Loader = Callable[[str], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class TileSet:
    """Annotated tiles, loaded lazily by id.

    ids: tile ids. groups: the slide (or patient, or any unit that must not straddle the
    train/validation/test split) of each tile. load: ``id -> (image, mask)`` with ``image`` an
    ``(H, W, 3)`` uint8 RGB tile and ``mask`` an ``(H, W)`` array, non-zero = object.
    """

    ids: tuple[str, ...]
    groups: tuple[str, ...]
    load: Loader

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.groups):
            raise ValueError(f"{len(self.ids)} ids but {len(self.groups)} groups: give one group per tile")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_pairs(
        cls, pairs: Sequence[tuple[np.ndarray, np.ndarray]], groups: Sequence[str] | None = None
    ) -> TileSet:
        """Tiles from in-memory ``(image, mask)`` pairs, ids ``"0"``, ``"1"``, ...; each tile is
        its own group unless ``groups`` says otherwise."""
        ids = tuple(str(i) for i in range(len(pairs)))
        return cls(ids, tuple(groups) if groups is not None else ids, lambda i: pairs[int(i)])

    @classmethod
    def from_dataset(cls, dataset, group_pattern: str | None = None) -> TileSet:
        """Tiles of a :class:`histoclick.evaluation.protocol.Dataset` (for example a
        ``FolderDataset``), masks being the samples' ground truth, grouped by slide.

        group_pattern: regular expression searched in each sample id; its first group (or the
            whole match) names the slide, e.g. ``r"^(.+)_tile"`` for ``slide1_tile003``.
            Without it the slide is what precedes ``@`` or ``/`` in the id (CAMELYON16 and PAIP
            tiles are ``slide@x,y``, QuPath ones ``image/key``); an id with neither is its own
            group, with a warning when that leaves every tile alone in its group.
        """
        ids = tuple(dataset.sample_ids)
        if group_pattern is None:
            groups = tuple(default_group(i) for i in ids)
            if len(set(groups)) == len(ids) > 1:
                warnings.warn(
                    f"the tile ids of {getattr(dataset, 'name', 'the dataset')} do not name their "
                    "slides, so every tile is its own group and tiles of one slide may fall on "
                    "both sides of the train/validation/test split: give a group pattern "
                    "(--group-pattern) when the ids hold the slide name",
                    stacklevel=2,
                )
        else:
            regex = _compiled(group_pattern)
            groups = tuple(_group(i, regex) for i in ids)

        def load(sample_id: str) -> tuple[np.ndarray, np.ndarray]:
            sample = dataset.load(sample_id)
            return sample.image, sample.gt

        return cls(ids, groups, load)

    def subset(self, indices: Sequence[int]) -> TileSet:
        return TileSet(
            tuple(self.ids[i] for i in indices), tuple(self.groups[i] for i in indices), self.load
        )

    def split(
        self, val_fraction: float, test_fraction: float = 0.0, seed: int = 0
    ) -> tuple[TileSet, TileSet, TileSet]:
        """Split into ``(train, val, test)`` by group: whole groups, drawn in a seeded random
        order, go to test until it holds at least ``test_fraction`` of the tiles, then to
        validation until it holds ``val_fraction``; at least one group stays for training."""
        fractions = {"val_fraction": val_fraction, "test_fraction": test_fraction}
        for name, value in fractions.items():
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if val_fraction + test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1 (some tiles must train), got "
                f"{val_fraction} + {test_fraction}"
            )
        names = sorted(set(self.groups))
        needed = 1 + (val_fraction > 0) + (test_fraction > 0)
        if len(names) < needed:
            raise ValueError(
                f"the {len(self)} tiles belong to {len(names)} group(s) ({', '.join(map(repr, names[:3]))}), "
                f"but train, validation and test need {needed} groups (slides) to be held out by "
                "group: give a group pattern that separates slides, or lower the fractions to 0"
            )
        order = [names[k] for k in np.random.default_rng(seed).permutation(len(names))]
        held: dict[str, set[str]] = {"test": set(), "val": set()}
        for subset, fraction, later in (("test", test_fraction, val_fraction > 0), ("val", val_fraction, False)):
            target = fraction * len(self)
            # Leave a group for training, and one for validation while filling the test set.
            while len(order) > 1 + later and sum(g in held[subset] for g in self.groups) < target:
                held[subset].add(order.pop(0))
        members = {"train": set(order), **held}
        return tuple(  # type: ignore[return-value]
            self.subset([i for i, g in enumerate(self.groups) if g in members[name]])
            for name in ("train", "val", "test")
        )


def default_group(sample_id: str) -> str:
    """The slide of a tile id without a group pattern: the part before the first ``@`` or
    ``/`` (``tumor_001@2048,4096`` -> ``tumor_001``), else the whole id."""
    return re.split(r"[@/]", sample_id, maxsplit=1)[0]


def _compiled(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ValueError(
            f"group pattern {pattern!r} is not a valid regular expression ({err}): give one whose "
            "first group names the slide, e.g. '^(.+?)_' for 'slide01_0003'"
        ) from None


def _group(sample_id: str, regex: re.Pattern) -> str:
    match = regex.search(sample_id)
    if match is None:
        raise ValueError(
            f"group pattern {regex.pattern!r} does not match tile id {sample_id!r}: every id must "
            "contain its slide name, e.g. pattern r'^(.+?)_' for 'slide01_0003'"
        )
    return match.group(1) if match.groups() else match.group(0)


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th of the 8 rotations/flips of an image or mask (``k = 0`` is the identity)."""
    rotated = np.rot90(array, k % 4)
    return np.ascontiguousarray(rotated[:, ::-1] if k >= 4 else rotated)


def low_res_target(mask: np.ndarray, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``mask`` in SAM's low-resolution mask frame: ``(gt, valid)``, both
    ``(image_size / 4, image_size / 4)`` bool; a low-resolution pixel is object (or valid) when
    at least half of the input pixels it covers are."""
    height, width = mask.shape
    new_h, new_w = ResizeLongestSide.get_preprocess_shape(height, width, image_size)
    full = np.zeros((2, image_size, image_size), np.float32)
    full[0, :new_h, :new_w] = cv2.resize(
        (np.asarray(mask) != 0).astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_NEAREST
    )
    full[1, :new_h, :new_w] = 1.0
    size = image_size // LOW_RES_SCALE
    gt, valid = (cv2.resize(plane, (size, size), interpolation=cv2.INTER_AREA) >= 0.5 for plane in full)
    return gt & valid, valid


class TrainingData(torch.utils.data.Dataset):
    """The non-empty tiles of a :class:`TileSet`, ready for the model, one augmentation each.

    Each item is a dict of tensors on the model's device: ``inputs`` (the image embedding
    ``(256, 64, 64)`` when the encoder is frozen, taken from ``cache``; else the normalised,
    padded image ``(3, 1024, 1024)``), ``gt`` and ``valid`` (low-resolution frame, bool). The augmentation of tile ``i`` (one of the 8 rotations/flips with
    ``augment="dihedral"``) is drawn from ``(seed, epoch, i)``: call :meth:`set_epoch` each epoch.

    Tiles whose mask is empty in the low-resolution frame are left out with a warning (the first
    training click must fall inside the object); scanning for them loads every tile once.
    """

    def __init__(
        self,
        tiles: TileSet,
        model: SamModel,
        *,
        frozen_encoder: bool,
        augment: str = "none",
        seed: int = 0,
        cache: EmbeddingCache | None = None,
    ) -> None:
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
        self.model = model
        self.frozen_encoder = frozen_encoder
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.cache = cache if cache is not None else EmbeddingCache()
        kept, empty = [], []
        for i, tile_id in enumerate(tiles.ids):
            gt, _ = low_res_target(tiles.load(tile_id)[1], model.image_size)
            (kept if gt.any() else empty).append(i)
        if empty:
            warnings.warn(
                f"{len(empty)} of {len(tiles)} tiles have no object pixel at SAM's mask "
                f"resolution and are not used for training (e.g. {tiles.ids[empty[0]]!r})",
                stacklevel=2,
            )
        self.tiles = tiles.subset(kept)

    def __len__(self) -> int:
        return len(self.tiles)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def variant(self, index: int) -> int:
        """The augmentation (dihedral index) tile ``index`` gets in the current epoch."""
        count = AUGMENTATIONS[self.augment]
        return int(np.random.default_rng((self.seed, self.epoch, index)).integers(count))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, mask = self.tiles.load(self.tiles.ids[index])
        k = self.variant(index)
        image, mask = dihedral(np.asarray(image), k), dihedral(np.asarray(mask), k)
        gt, valid = low_res_target(mask, self.model.image_size)
        device = self.model.device
        if self.frozen_encoder:
            # A clone leaves inference mode, so autograd may save it for the backward pass.
            inputs = self.cache.get(self.model, image).features[0].clone()
        else:
            inputs = self.pixels(image)
        return {
            "inputs": inputs,
            "gt": torch.as_tensor(gt, device=device),
            "valid": torch.as_tensor(valid, device=device),
        }

    def pixels(self, image: np.ndarray) -> torch.Tensor:
        """The ``(3, S, S)`` normalised, padded image tensor SAM's encoder takes."""
        return self.model.preprocess(image)[0][0]
