"""Checkpoint selection on a validation click loop, with the evaluation protocol's own pieces.

The validation loss (NFL of one prediction after a few random training clicks) barely tracks
what the study reports, so ``best.pt`` is the epoch whose model does best in the evaluation's
simulated-user loop (:func:`histoclick.evaluation.run_sample`: RITM's deterministic clicker, SAM
through :class:`~histoclick.ClickSession`) on the validation tiles: the highest mean IoU over
clicks 1..k (the area under the mIoU-vs-clicks curve divided by k). NoC@85 over the same k
clicks is logged beside it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from histoclick.evaluation.metrics import miou_curve, noc
from histoclick.evaluation.protocol import Sample, run_sample
from histoclick.evaluation.sam_method import SamMethod
from histoclick.models.sam_model import SamModel
from histoclick.training.data import TileSet


@dataclass(frozen=True)
class ClickScore:
    """Validation click-loop result: ``miou`` (mean IoU over clicks 1..k and tiles, higher is
    better: the selection criterion), ``noc85`` (mean clicks to IoU 0.85, k when never) and
    ``tiles`` (how many non-empty tiles were scored)."""

    miou: float
    noc85: float
    tiles: int


def training_view(model: SamModel, frozen_encoder: bool) -> SamModel:
    """The model being trained as a :class:`SamModel` with an identity of its own (in eval
    mode), so the click loop never reuses embeddings cached for other weights: with a trained
    encoder every call gives a new encoder identity; with a frozen one, the base's."""
    return SamModel(
        model.sam, model.name, model.device, f"{model.source} (in training)",
        checkpoint_sha256=f"training-{uuid.uuid4().hex}",
        encoder_identity=model.encoder_identity if frozen_encoder else None,
    )


@torch.no_grad()
def click_loop_score(
    model: SamModel,
    tiles: TileSet,
    clicks: int,
    *,
    cache_dir=None,
    rank: int = 0,
    world: int = 1,
) -> ClickScore:
    """Score ``model`` on ``tiles`` with ``clicks`` simulated clicks per tile (tiles sharded over
    the ``world`` processes, results reduced). ``cache_dir``: embedding cache (only for a frozen
    encoder). Tiles without object pixels are skipped."""
    method = SamMethod(model, cache_dir=cache_dir)
    curves, nocs = [], []
    for tile_id in tiles.ids[rank::world]:
        image, mask = tiles.load(tile_id)
        sample = Sample(tile_id, np.asarray(image), np.asarray(mask) != 0)
        if sample.is_empty():
            continue
        ious = run_sample(method, sample, max_clicks=clicks).ious
        curves.append(ious)
        nocs.append(noc(ious, 0.85, clicks))
    sums = torch.tensor(
        [float(miou_curve(curves, clicks).mean() * len(curves)) if curves else 0.0, float(sum(nocs)), len(curves)],
        dtype=torch.float64, device=model.device,
    )
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    total_miou, total_noc, count = sums.tolist()
    if count == 0:
        raise ValueError("no validation tile has an object pixel: the click loop cannot score the model")
    return ClickScore(total_miou / count, total_noc / count, int(count))
