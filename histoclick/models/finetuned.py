"""Fine-tuned checkpoints: only the trained tensors, plus what is needed to rebuild the rest.

A file is a dict readable with ``torch.load(weights_only=True)``::

    {"histoclick": {"format": 1, "scenario": "md", "base": {...}, "config": {...},
                    "enhanced": {...} or None, "trainable": [names], "epoch": 3, "version": ...},
     "state_dict": {name: tensor},   # the trainable parameters only
     "training": {...}}              # optional: optimizer, scheduler and log, for resuming

``base`` names the SAM checkpoint the run started from: ``variant``, ``identity`` (the
:attr:`SamModel.identity`, ``variant:sha256`` of the file, or ``variant:random-seed-N``),
``sha256`` (None for random weights) and ``source`` (the file's path when trained).
:func:`histoclick.load_model` recognises these files (:func:`is_finetuned`), loads the base they
name and rebuilds the model with :func:`finetuned_model`. This module is the file format only:
the training loop (:mod:`histoclick.training`) writes it, models never import training.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from histoclick import __version__
from histoclick.files import atomic_path

from .checkpoints import CheckpointError, sha256_of
from .enhanced_decoder import EnhancedDecoderConfig, EnhancedMaskDecoder
from .sam_model import SamModel
from .variants import SamVariant

MARKER = "histoclick"
FORMAT = 1
RANDOM_PREFIX = "random-seed-"


@dataclass(frozen=True)
class FinetunedMeta:
    """The validated metadata of a fine-tuned checkpoint (see the module docstring)."""

    scenario: str
    base: dict[str, Any]
    enhanced: EnhancedDecoderConfig | None
    trainable: tuple[str, ...]
    config: dict[str, Any]
    epoch: int

    @property
    def encoder_trained(self) -> bool:
        return any(name.startswith("image_encoder.") for name in self.trainable)


def is_finetuned(content: dict) -> bool:
    """True when a checkpoint's dict is a histoclick fine-tuned checkpoint."""
    return MARKER in content


def base_reference(model: SamModel) -> dict[str, Any]:
    """How a checkpoint names its base model (call before training changes ``model``)."""
    variant, digest = model.identity.split(":", 1)
    return {
        "variant": variant,
        "identity": model.identity,
        "sha256": None if digest.startswith(RANDOM_PREFIX) else digest,
        "source": model.source,
    }


def trained_digest(base: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a base reference and the trained tensors: the identity of weights trained in
    memory (a model changed in place by fine-tuning), before or without any file."""
    digest = hashlib.sha256(base["identity"].encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


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

    Raises:
        FloatingPointError: a trained tensor holds NaN or infinity (nothing is written).
    """
    parameters = dict(model.sam.named_parameters())
    state_dict = {name: parameters[name].detach().cpu() for name in trainable}
    broken = [name for name, tensor in state_dict.items() if not torch.isfinite(tensor).all()]
    if broken:
        raise FloatingPointError(
            f"not writing {path}: {len(broken)} trained tensors hold NaN or infinity "
            f"(e.g. {broken[0]}); the training diverged: lower the learning rate"
        )
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
        "state_dict": state_dict,
    }
    if training is not None:
        content["training"] = training
    with atomic_path(path) as tmp:
        torch.save(content, tmp)
    return Path(path)


def read_metadata(path: str | os.PathLike, content: dict, expected: SamVariant | None = None) -> FinetunedMeta:
    """Validate the metadata of a fine-tuned checkpoint's dict (as ``read_checkpoint`` returns
    it); damaged or foreign metadata raises a :class:`CheckpointError` naming ``path``.

    expected: the variant the caller asked for; a checkpoint of another base is refused.
    """
    meta = content.get(MARKER)

    def damaged(problem: str) -> CheckpointError:
        return CheckpointError(
            f"{path} is a damaged histoclick checkpoint: {problem}; write it again (or resume "
            "from an intact last.pt) with histoclick finetune"
        )

    if not isinstance(meta, dict):
        raise damaged(f"its {MARKER!r} entry is a {type(meta).__name__}, not a dict")
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a histoclick checkpoint of format {meta.get('format')!r}, but this "
            f"histoclick ({__version__}) reads format {FORMAT}: upgrade histoclick"
        )
    base = meta.get("base")
    if not isinstance(base, dict) or not all(isinstance(base.get(k), str) for k in ("variant", "identity", "source")):
        raise damaged("its base model reference (variant, identity, source) is missing or not text")
    if not isinstance(base.get("sha256"), (str, type(None))):
        raise damaged("its base model's sha256 is not text")
    if base["sha256"] is None and RANDOM_PREFIX not in base["identity"]:
        raise damaged(f"its base {base['identity']!r} has neither a SHA-256 nor a random seed")
    trainable = meta.get("trainable")
    if not isinstance(trainable, list) or not all(isinstance(n, str) for n in trainable):
        raise damaged("its list of trained tensors is missing or not a list of names")
    state_dict = content.get("state_dict")
    if not isinstance(state_dict, dict) or not all(isinstance(t, torch.Tensor) for t in state_dict.values()):
        raise damaged("its 'state_dict' is missing or holds something other than tensors")
    if not isinstance(meta.get("scenario"), str) or not isinstance(meta.get("config", {}), dict):
        raise damaged("its scenario or config is missing or of the wrong type")
    epoch = meta.get("epoch")
    if not isinstance(epoch, int) or epoch < 0:
        raise damaged(f"its epoch count {epoch!r} is not a non-negative integer")
    enhanced = meta.get("enhanced")
    if enhanced is not None:
        try:
            enhanced = EnhancedDecoderConfig(**enhanced)
        except (TypeError, ValueError) as err:
            raise damaged(f"its enhanced decoder settings are invalid ({err})") from None
    if expected is not None and base["variant"] != expected.name:
        raise CheckpointError(
            f"{path} holds a fine-tuned {base['variant']} model, but {expected.name} was asked "
            f"for: call load_model({base['variant']!r}, checkpoint=...) or pass the file alone"
        )
    return FinetunedMeta(meta["scenario"], base, enhanced, tuple(trainable), meta.get("config", {}), epoch)


def finetuned_model(base: SamModel, path: str | os.PathLike, content: dict, meta: FinetunedMeta) -> SamModel:
    """The fine-tuned model of checkpoint ``path``: ``base`` (the model its metadata names,
    changed in place) with the enhanced decoder when it had one and the trained tensors; all
    parameters frozen, in eval mode. Its encoder identity stays the base's when the encoder
    was not trained, so cached embeddings are shared."""
    if meta.enhanced is not None:
        base.sam.mask_decoder = EnhancedMaskDecoder.from_sam(base.sam.mask_decoder, meta.enhanced)
    apply_tensors(base, content["state_dict"], meta.trainable, path)
    for param in base.sam.parameters():
        param.requires_grad_(False)
    return SamModel(
        base.sam, base.name, base.device, str(path), sha256_of(path),
        encoder_identity=None if meta.encoder_trained else base.encoder_identity,
    )


def apply_tensors(
    model: SamModel, tensors: dict[str, torch.Tensor], names: list[str] | tuple[str, ...], path: str | os.PathLike
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
