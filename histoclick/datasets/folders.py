"""Folders of image / mask pairs, laid out like ``camelyon16_mini``.

``root/images/<stem>.(jpg|jpeg|png|tif|tiff)`` holds RGB tiles and ``root/masks/<stem>.png`` the
matching single-channel masks (non-zero, normally 255 = tumour; 0 = background), same size.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from histoclick.evaluation.protocol import Dataset, Sample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


class FolderDataset(Dataset):
    """Image/mask pairs matched by file stem, in sorted stem order; sample id = stem.

    Args:
        root: folder holding ``images/`` and ``masks/``.
        name: dataset name in tables and records (default: the folder's name).
    """

    def __init__(self, root: str | Path, name: str | None = None) -> None:
        self.root = Path(root)
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
        mask_path = self._masks_dir / f"{sample_id}.png"
        if not mask_path.is_file():
            raise FileNotFoundError(f"image {image_path} has no mask: expected {mask_path}")
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if image is None or mask is None:
            bad = image_path if image is None else mask_path
            raise ValueError(f"cannot read {bad}: not an image OpenCV can decode")
        if mask.ndim == 3:
            mask = mask.max(axis=2)
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
