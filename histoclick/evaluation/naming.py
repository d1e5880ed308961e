"""One name per method, the same in records, summaries, plots, the demo, ``evaluate``,
``finetune`` and the notebooks: ``sam:<architecture>[+<scenario>]@<digest prefix>``.

``sam:vit_b@ec2df627`` is the official ViT-B (the first 8 hex digits of its checkpoint's
SHA-256), ``sam:vit_b+md@1a2b3c4d`` a ViT-B whose mask decoder was fine-tuned (scenario ``md``)
into the checkpoint whose SHA-256 starts with ``1a2b3c4d``; ``sam:vit_tiny@random-seed-0`` the
random-weight test model. The full digest goes into every record row (``weights``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from histoclick.models import SamModel

DIGEST_PREFIX = 8  # hex digits of the SHA-256 in a name: unique enough to tell runs apart


def weights_digest(model: SamModel) -> str:
    """The model's weights identity without its architecture: the checkpoint file's full
    SHA-256 (hex), or ``random-seed-N`` for random weights."""
    return model.identity.split(":", 1)[1]


def scenario_of(model: SamModel) -> str | None:
    """The fine-tuning scenario (``md``, ``ie_md``, ``whole``, ``enhanced``) recorded in the
    model's checkpoint file, or None for official or random weights."""
    from histoclick.models.checkpoints import OFFICIAL_CHECKPOINTS, read_checkpoint
    from histoclick.models.finetuned import is_finetuned

    source = Path(model.source)
    official = {checkpoint.sha256 for checkpoint in OFFICIAL_CHECKPOINTS.values()}
    if weights_digest(model) in official or not source.is_file():
        return None  # nothing to read: official files hold SAM's own weights
    content = read_checkpoint(source)
    return content["histoclick"]["scenario"] if is_finetuned(content) else None


def method_name(model: SamModel, scenario: str | None = None) -> str:
    """``sam:<architecture>[+<scenario>]@<digest prefix>`` (see the module docstring).

    Args:
        model: a loaded SAM model.
        scenario: the fine-tuning scenario when the caller knows it; None reads it from the
            model's checkpoint file (official and random weights have none).
    """
    scenario = scenario or scenario_of(model)
    digest = weights_digest(model)
    if not digest.startswith("random-"):
        digest = digest[:DIGEST_PREFIX]
    return f"sam:{model.name}{'+' + scenario if scenario else ''}@{digest}"


def checkpoint_method_name(kind: str, checkpoint: str | os.PathLike, digest: str) -> str:
    """``<kind>:<checkpoint stem>@<digest prefix>`` for a method known by its checkpoint file,
    e.g. ``ritm:coco_lvis_h18_itermask@5f6a7b8c``."""
    return f"{kind}:{Path(checkpoint).stem}@{digest[:DIGEST_PREFIX]}"
