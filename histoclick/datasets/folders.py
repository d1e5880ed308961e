"""Folders of image / mask pairs, laid out like ``camelyon16_mini``.

``root/images/<stem>.(jpg|jpeg|png|tif|tiff)`` holds RGB tiles and ``root/masks/<stem>.png`` the
matching single-channel masks (non-zero, normally 255 = tumour; 0 = background), same size. A
mask may hold one label per object (1..n, 8 or 16 bit) for the ``instances`` object mode.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from histoclick.evaluation.protocol import Dataset, Sample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


class FolderDataset(Dataset):
    """Image/mask pairs matched by file stem, in sorted stem order; sample id = stem.

    Args:
        root: folder holding ``images/`` and ``masks/``.
        name: dataset name in tables and records (default: the folder's name).
    """

    def __init__(self, root: str | Path, name: str | None = None) -> None:
        self.root = Path(root).expanduser()
        images_dir, masks_dir = self.root / "images", self.root / "masks"
        if not images_dir.is_dir() or not masks_dir.is_dir():
            raise FileNotFoundError(
                f"{self.root} must hold an images/ folder and a masks/ folder "
                "(images/<stem>.jpg|png, masks/<stem>.png)"
            )
        super().__init__(name or self.root.resolve().name)
        self._images = {
            path.stem: path
            for path in sorted(images_dir.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES
        }
        if not self._images:
            raise FileNotFoundError(
                f"no images in {images_dir}: expected files ending in {', '.join(IMAGE_SUFFIXES)}"
            )
        self._masks_dir = masks_dir

    @property
    def sample_ids(self) -> list[str]:
        return sorted(self._images)

    def load(self, sample_id: str) -> Sample:
        image_path = self._images[sample_id]
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read {image_path}: not an image OpenCV can decode")
        mask_path, mask = self._read_mask(sample_id)
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} pixels but {image_path} is "
                f"{image.shape[1]}x{image.shape[0]}; a mask must match its image"
            )
        return Sample(
            id=sample_id,
            image=cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
            gt=mask > 0,
            meta={"image": str(image_path), "mask": str(mask_path)},
        )

    def instance_labels(self, sample_id: str) -> np.ndarray:
        """The mask's values as object labels (0 = background; a 0/255 mask is one object),
        for :class:`histoclick.datasets.objects.ObjectDataset` in the ``instances`` mode."""
        return self._read_mask(sample_id)[1]

    def _read_mask(self, sample_id: str) -> tuple[Path, np.ndarray]:
        mask_path = self._masks_dir / f"{sample_id}.png"
        if not mask_path.is_file():
            raise FileNotFoundError(f"image {self._images[sample_id]} has no mask: expected {mask_path}")
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise ValueError(f"cannot read {mask_path}: not an image OpenCV can decode")
        return mask_path, mask.max(axis=2) if mask.ndim == 3 else mask
