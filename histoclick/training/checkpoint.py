"""Fine-tuned checkpoints: only the trained tensors, plus what is needed to rebuild the rest.

A file is a dict readable with ``torch.load(weights_only=True)``::

    {"histoclick": {"format": 1, "scenario": "md", "base": {...}, "config": {...},
                    "enhanced": {...} or None, "trainable": [names], "epoch": 3, "version": ...},
     "state_dict": {name: tensor},   # the trainable parameters only
     "training": {...}}              # optional: optimizer, scheduler and log, for resuming

``base`` names the SAM checkpoint the run started from: ``variant``, ``identity`` (the
:attr:`SamModel.identity`, ``variant:sha256`` of the file, or ``variant:random-seed-N``),
``sha256`` (None for random weights) and ``source`` (the file's path when trained).
:func:`histoclick.load_model` recognises these files and calls :func:`load_finetuned`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from histoclick import __version__
from histoclick.files import atomic_path
from histoclick.models.checkpoints import OFFICIAL_CHECKPOINTS, CheckpointError, sha256_of
from histoclick.models.enhanced_decoder import EnhancedDecoderConfig
from histoclick.models.sam_model import SamModel
from histoclick.models.variants import SamVariant

MARKER = "histoclick"
FORMAT = 1
_RANDOM = "random-seed-"


def base_reference(model: SamModel) -> dict[str, Any]:
    """How a checkpoint names its base model (call before training changes ``model``)."""
    variant, digest = model.identity.split(":", 1)
    return {
        "variant": variant,
        "identity": model.identity,
        "sha256": None if digest.startswith(_RANDOM) else digest,
        "source": model.source,
    }


def save_checkpoint(
    path: str | os.PathLike,
    model: SamModel,
    *,
    base: dict[str, Any],
    scenario: str,
    trainable: list[str],
    config: dict[str, Any],
    epoch: int,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write the ``trainable`` parameters of ``model`` with the run's metadata, atomically.

    Args:
        base: :func:`base_reference` of the model before fine-tuning.
        scenario: the fine-tuning scenario (see :mod:`histoclick.training.scenarios`).
        config: the run's configuration as plain values (stored for the record and for resume).
        epoch: epochs completed (1-based count).
        training: resume state (optimizer, scheduler, log); None for a weights-only file.
    """
    parameters = dict(model.sam.named_parameters())
    decoder_config = getattr(model.sam.mask_decoder, "config", None)
    content: dict[str, Any] = {
        MARKER: {
            "format": FORMAT,
            "scenario": scenario,
            "base": base,
            "config": config,
            "enhanced": None if decoder_config is None else vars(decoder_config).copy(),
            "trainable": list(trainable),
            "epoch": epoch,
            "version": __version__,
        },
        "state_dict": {name: parameters[name].detach().cpu() for name in trainable},
    }
    if training is not None:
        content["training"] = training
    with atomic_path(path) as tmp:
        torch.save(content, tmp)
    return Path(path)


def load_finetuned(
    path: str | os.PathLike,
    content: dict,
    device: torch.device,
    expected: SamVariant | None = None,
) -> SamModel:
    """Rebuild a fine-tuned model: load its base (SHA-256 verified), apply its scenario, then
    its tensors. ``content`` is the file's dict as read by ``read_checkpoint``."""
    from histoclick.training.scenarios import apply_scenario

    path = Path(path)
    meta = content[MARKER]
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a histoclick checkpoint of format {meta.get('format')}, but this "
            f"histoclick ({__version__}) reads format {FORMAT}: upgrade histoclick"
        )
    base_ref = meta["base"]
    if expected is not None and base_ref["variant"] != expected.name:
        raise CheckpointError(
            f"{path} holds a fine-tuned {base_ref['variant']} model, but {expected.name} was asked "
            f"for: call load_model({base_ref['variant']!r}, checkpoint=...) or pass the file alone"
        )
    model = load_base(base_ref, path, device)
    enhanced = None if meta["enhanced"] is None else EnhancedDecoderConfig(**meta["enhanced"])
    apply_scenario(model, meta["scenario"], enhanced)
    apply_tensors(model, content["state_dict"], meta["trainable"], path)
    for param in model.sam.parameters():
        param.requires_grad_(False)
    encoder_trained = any(name.startswith("image_encoder.") for name in meta["trainable"])
    return SamModel(
        model.sam, model.name, device, str(path), sha256_of(path),
        encoder_identity=None if encoder_trained else model.identity,
    )


def apply_tensors(
    model: SamModel, tensors: dict[str, torch.Tensor], names: list[str], path: str | os.PathLike
) -> None:
    """Copy a checkpoint's ``tensors`` (exactly the parameters ``names``) into ``model``."""
    parameters = dict(model.sam.named_parameters())
    unknown = sorted(set(tensors) - set(parameters))
    missing = sorted(set(names) - set(tensors))
    if unknown or missing:
        raise CheckpointError(
            f"{path} does not fit its base model: "
            + (f"unknown tensors {unknown[:3]} " if unknown else "")
            + (f"missing tensors {missing[:3]}" if missing else "")
            + "; the file is damaged or was written by another histoclick version"
        )
    with torch.no_grad():
        for name, tensor in tensors.items():
            if parameters[name].shape != tensor.shape:
                raise CheckpointError(
                    f"{path}: tensor {name} has shape {tuple(tensor.shape)}, the model expects "
                    f"{tuple(parameters[name].shape)}; the file does not belong to this base model"
                )
            parameters[name].copy_(tensor)


def load_base(base: dict[str, Any], checkpoint: Path, device: torch.device) -> SamModel:
    """Load the base model a fine-tuned ``checkpoint`` names and check it is the same weights."""
    from histoclick.models.loading import load_model

    variant, identity, digest = base["variant"], base["identity"], base["sha256"]
    if digest is None:  # random weights, rebuilt from their seed
        seed = int(identity.rsplit(_RANDOM, 1)[1])
        return load_model(variant, device, seed=seed)
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

