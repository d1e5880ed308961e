"""load_model: one call for official SAM and MobileSAM checkpoints, local files and the tiny test model."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..files import atomic_path
from .checkpoints import (
    OFFICIAL_CHECKPOINTS,
    CheckpointError,
    official_checkpoint,
    read_checkpoint,
    sha256_of,
)
from .finetuned import RANDOM_PREFIX, finetuned_model, is_finetuned, read_metadata
from .sam_model import SamModel
from .variants import VARIANTS, SamVariant, build_sam, variant_of_state_dict


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; anything else goes to ``torch.device``."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "auto",
    checkpoint: str | os.PathLike | None = None,
    *,
    download: bool = True,
    seed: int = 0,
) -> SamModel:
    """Load a SAM model for click segmentation.

    Args:
        name_or_path: a variant name (``"vit_b"``, ``"vit_l"``, ``"vit_h"``, and ``"vit_t"``,
            MobileSAM, whose small TinyViT encoder embeds a tile several times faster on a CPU:
            the official checkpoint from ``$HISTOCLICK_CHECKPOINT_DIR``, downloaded and
            SHA-256-verified on first use; ``"vit_tiny"``: random weights for tests unless
            ``checkpoint`` is given),
            or the path of a checkpoint file whose variant is recognised from its tensors
            (``~`` is expanded, here and in ``checkpoint``).
        device: ``"auto"`` (CUDA, then MPS, then CPU), or any torch device.
        checkpoint: with a variant name, load this file instead of the official one; it must
            hold that variant.
        download: allow downloading an official checkpoint that is not cached yet.
        seed: seed of the random weights of a ``vit_tiny`` without checkpoint.
    """
    device = resolve_device(device)
    name = str(name_or_path)
    if name in VARIANTS:
        variant = VARIANTS[name]
        if checkpoint is not None:
            return _from_file(Path(checkpoint).expanduser(), device, expected=variant)
        if name in OFFICIAL_CHECKPOINTS:
            path = official_checkpoint(name, download=download)
            return _from_file(path, device, expected=variant, sha256=OFFICIAL_CHECKPOINTS[name].sha256)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            sam = build_sam(variant)
        return SamModel(sam, name, device, f"random weights (seed {seed})", f"random-seed-{seed}")
    if checkpoint is not None:
        raise ValueError("pass a checkpoint path either as name_or_path or as checkpoint=, not both")
    path = Path(name_or_path).expanduser()
    if not path.exists() and not path.suffix:
        raise ValueError(
            f"unknown model {name!r}: use one of {', '.join(VARIANTS)} or a checkpoint file path"
        )
    return _from_file(path, device)


def save_state_dict(model: SamModel, path: str | os.PathLike) -> Path:
    """Write the model's weights as a plain state_dict, the official checkpoints' format, atomically
    (``~`` in ``path`` is expanded)."""
    path = Path(path).expanduser()
    with atomic_path(path) as tmp:
        torch.save({k: v.cpu() for k, v in model.sam.state_dict().items()}, tmp)
    return path


def load_base(base: dict, checkpoint: str | os.PathLike, device: str | torch.device = "auto") -> SamModel:
    """Load the base model a fine-tuned ``checkpoint`` names (its metadata's ``base``: see
    :mod:`histoclick.models.finetuned`) and check it is the same weights, by SHA-256."""
    checkpoint = Path(checkpoint)
    variant, identity, digest = base["variant"], base["identity"], base["sha256"]
    if digest is None:  # random weights, rebuilt from their seed
        return load_model(variant, device, seed=int(identity.rsplit(RANDOM_PREFIX, 1)[1]))
    source = Path(base["source"])
    for candidate in (source, checkpoint.parent / source.name):
        if candidate.is_file() and sha256_of(candidate) == digest:
            return load_model(candidate, device)
    official = OFFICIAL_CHECKPOINTS.get(variant)
    if official is not None and official.sha256 == digest:
        return load_model(variant, device)
    raise CheckpointError(
        f"{checkpoint} was fine-tuned from {variant} weights with SHA-256 {digest}, read from "
        f"{source}; no file with that digest is there or next to {checkpoint.name}: put the base "
        "checkpoint back at one of those places"
    )


def _from_file(
    path: Path, device: torch.device, expected: SamVariant | None = None, sha256: str | None = None
) -> SamModel:
    state_dict = read_checkpoint(path)
    if is_finetuned(state_dict):  # a fine-tuned checkpoint of ours: its base, then its tensors
        meta = read_metadata(path, state_dict, expected)
        return finetuned_model(load_base(meta.base, path, device), path, state_dict, meta)
    variant = variant_of_state_dict(state_dict)
    if variant is None:
        sample = ", ".join(list(state_dict)[:3]) or "none"
        raise CheckpointError(
            f"{path} is not a SAM checkpoint: expected a state_dict with image_encoder.*, "
            f"prompt_encoder.* and mask_decoder.* tensors of one of {', '.join(VARIANTS)}; "
            f"found keys like {sample}"
        )
    if expected is not None and variant.name != expected.name:
        raise CheckpointError(
            f"{path} holds a {variant.name} checkpoint, but {expected.name} was asked for: "
            f"call load_model({variant.name!r}, checkpoint=...) or pass the right file"
        )
    sam = build_sam(variant)
    try:
        sam.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path} looks like a {variant.name} checkpoint but its tensors do not fit the "
            f"{variant.name} architecture: {str(err).splitlines()[0]}"
        ) from None
    return SamModel(sam, variant.name, device, str(path), sha256)
