"""Fine-tuning with simulated clicks, as RITM trains (and as the study fine-tuned SAM).

Each step, for every tile of the batch: a first click inside the object, then ``n`` extra clicks
(``n`` drawn in ``0..max_extra_clicks`` per batch), each one from the errors of the model's own
previous prediction, with that prediction's low-resolution logits fed back as mask prompt. The
extra clicks run without gradient; the loss is taken on the prediction after the last click.
When that is the first click and SAM's decoder is trained, SAM's three candidate masks are
predicted and the best one is trained (SAM's rule for ambiguous prompts, and what
:class:`~histoclick.ClickSession` shows on a first click).

Runs unchanged under ``torchrun`` with DistributedDataParallel (one process per GPU)::

    torchrun --nproc_per_node=4 --no-python histoclick finetune --data DIR --out runs/md
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_endpoint=HOST:29500 \\
        --no-python histoclick finetune ...   # same command with --node_rank=1 on the 2nd node

Only rank 0 writes logs and checkpoints; every rank may write embedding-cache entries (atomic
writes of content-keyed files, so a shared cache folder is safe).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from histoclick.embeddings import EmbeddingCache
from histoclick.files import atomic_path
from histoclick.models.checkpoints import CheckpointError, read_checkpoint
from histoclick.models.enhanced_decoder import EnhancedDecoderConfig
from histoclick.models.loading import resolve_device
from histoclick.models.sam_model import SamModel
from histoclick.training.checkpoint import apply_tensors, base_reference, save_checkpoint
from histoclick.training.clicks import next_training_click
from histoclick.training.data import AUGMENTATIONS, LOW_RES_SCALE, TileSet, TrainingData
from histoclick.training.losses import LOSSES, mask_iou
from histoclick.training.scenarios import apply_scenario, frozen_encoder

LOG_COLUMNS = ("epoch", "steps", "lr", "train_loss", "train_iou", "val_loss", "val_iou", "seconds")


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of a fine-tuning run.

    scenario: ``md``, ``ie_md``, ``whole`` or ``enhanced`` (see :mod:`.scenarios`).
    epochs: passes over the training tiles. batch_size: tiles per optimizer step (per process).
    lr: AdamW peak learning rate, decayed to 0 along a cosine over all steps.
    weight_decay: AdamW decoupled weight decay. grad_clip: max gradient L2 norm (0: no clipping).
    max_extra_clicks: clicks after the first, drawn uniformly in ``0..max_extra_clicks`` per batch.
    loss: ``nfl`` (Normalized Focal Loss, RITM's), ``dice`` or ``bce``.
    iou_loss_weight: weight of the MSE between predicted and actual IoU (trains the IoU head).
    augment: ``dihedral`` (a random one of the 8 rotations/flips of each tile per epoch; with a
        frozen encoder each variant's embedding is computed once and cached) or ``none``.
    val_fraction: share of tiles held out for validation, whole groups (slides) at a time.
    seed: seeds the split, the augmentations, the clicks and the new layers' initialisation.
    bf16: autocast to bfloat16 on GPUs that support it (the CPU always computes in float32).
    enhanced: the enhanced decoder's shape (scenario ``enhanced`` only).
    """

    scenario: str = "md"
    epochs: int = 10
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_extra_clicks: int = 3
    loss: str = "nfl"
    iou_loss_weight: float = 1.0
    augment: str = "dihedral"
    val_fraction: float = 0.2
    seed: int = 0
    bf16: bool = True
    enhanced: EnhancedDecoderConfig = field(default_factory=EnhancedDecoderConfig)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_extra_clicks < 0:
            raise ValueError("epochs and batch_size must be >= 1 and max_extra_clicks >= 0")
        frozen_encoder(self.scenario)  # validates the name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneConfig:
        return cls(**{**values, "enhanced": EnhancedDecoderConfig(**values["enhanced"])})


@dataclass
class FinetuneResult:
    """What :func:`finetune` produced.

    model: the model after the last epoch (scenario applied). best: checkpoint of the epoch with
    the lowest validation loss (the last epoch without validation set). last: resumable
    checkpoint of the last epoch. log: the CSV log. history: its rows. train, val: the split.
    """

    model: SamModel
    best: Path
    last: Path
    log: Path
    history: list[dict[str, Any]]
    train: TileSet
    val: TileSet


class ClickTrainingModel(nn.Module):
    """One training forward pass of SAM (or the enhanced decoder) with simulated clicks.

    Wrapping the whole iterative pass in one module lets DistributedDataParallel see a single
    forward per backward.
    """

    def __init__(self, model: SamModel, frozen_encoder: bool) -> None:
        super().__init__()
        self.sam = model.sam
        self.frozen_encoder = frozen_encoder

    def forward(
        self,
        inputs: torch.Tensor,
        gt: torch.Tensor,
        valid: torch.Tensor,
        extra_clicks: int,
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the clicks on a batch; returns the last prediction's ``(B, M, S, S)``
        low-resolution logits and ``(B, M)`` IoU estimates (``M`` = 3 for SAM's first click
        when it is the one trained, else 1).

        inputs: ``(B, 256, 64, 64)`` embeddings (frozen encoder) or ``(B, 3, 1024, 1024)`` images.
        gt, valid: ``(B, S, S)`` bool in the low-resolution frame.
        """
        features = inputs if self.frozen_encoder else self.sam.image_encoder(inputs)
        gt_np, valid_np = gt.cpu().numpy(), valid.cpu().numpy()
        empty = np.zeros_like(gt_np[0])
        clicks = [[next_training_click(g, empty, rng, v)] for g, v in zip(gt_np, valid_np)]
        previous = None
        with torch.no_grad():
            for step in range(extra_clicks):
                logits, iou = self._decode(features.detach(), clicks, previous, multimask=step == 0)
                best = iou.argmax(dim=1)
                previous = logits[torch.arange(len(logits)), best][:, None]
                predicted = (previous[:, 0] > 0).cpu().numpy()
                for b, sample_clicks in enumerate(clicks):
                    sample_clicks.append(next_training_click(gt_np[b], predicted[b], rng, valid_np[b]))
        return self._decode(features, clicks, previous, multimask=extra_clicks == 0)

    def _decode(self, features, clicks, previous, multimask: bool):
        """SAM's prompt encoder and mask decoder, tile by tile (SAM's decoder takes one image).
        Clicks are low-resolution pixel indices; a None click (no error left) becomes SAM's
        padding point (label -1)."""
        coords = torch.tensor(
            [[_input_xy(c) for c in sample] for sample in clicks], dtype=torch.float32, device=features.device
        )
        labels = torch.tensor(
            [[-1 if c is None else int(c.is_positive) for c in sample] for sample in clicks],
            device=features.device,
        )
        dense_pe = self.sam.prompt_encoder.get_dense_pe()
        masks, ious = [], []
        for b in range(len(clicks)):
            sparse, dense = self.sam.prompt_encoder(
                points=(coords[b : b + 1], labels[b : b + 1]),
                boxes=None,
                masks=None if previous is None else previous[b : b + 1],
            )
            mask, iou = self.sam.mask_decoder(
                image_embeddings=features[b : b + 1],
                image_pe=dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
            masks.append(mask)
            ious.append(iou)
        return torch.cat(masks), torch.cat(ious)


def _input_xy(click) -> tuple[float, float]:
    """Centre of a low-resolution pixel in SAM's input frame, as the (x, y) pixel index the
    prompt encoder takes (it adds the half pixel itself)."""
    if click is None:
        return (0.0, 0.0)
    return ((click.x + 0.5) * LOW_RES_SCALE - 0.5, (click.y + 0.5) * LOW_RES_SCALE - 0.5)


def batch_loss(
    logits: torch.Tensor,
    iou_pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor,
    config: FinetuneConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, iou)``: the training loss of a batch (mask loss of each tile's best candidate,
    plus the weighted IoU-head MSE), and the mean IoU of the masks a click session would keep
    (highest predicted IoU)."""
    logits, iou_pred = logits.float(), iou_pred.float()
    target = gt[:, None].expand_as(logits)
    mask = valid[:, None].expand_as(logits)
    per_mask = LOSSES[config.loss](logits, target, mask)
    actual = mask_iou(logits.detach(), target, mask)
    loss = per_mask.min(dim=1).values.mean() + config.iou_loss_weight * F.mse_loss(iou_pred, actual)
    kept = actual.gather(1, iou_pred.argmax(dim=1, keepdim=True))
    return loss, kept.mean()


def training_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    extra_clicks: int,
    rng: np.random.Generator,
    config: FinetuneConfig,
    autocast: torch.autocast | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch of :class:`TrainingData` items; returns the detached
    ``(loss, kept-mask IoU)``. Gradients are clipped to ``config.grad_clip``."""
    with autocast if autocast is not None else contextlib.nullcontext():
        logits, iou_pred = net(batch["inputs"], batch["gt"], batch["valid"], extra_clicks, rng)
    loss, iou = batch_loss(logits, iou_pred, batch["gt"], batch["valid"], config)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    optimizer.step()
    return loss.detach(), iou.detach()


def finetune(
    model: SamModel,
    tiles: TileSet,
    out_dir: str | os.PathLike,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    val: TileSet | None = None,
    resume: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune ``model`` (the base SAM, changed in place) on annotated tiles.

    Args:
        model: base model from :func:`histoclick.load_model`, on the device to train on (under
            torchrun: ``distributed_device()``).
        tiles: training tiles; unless ``val`` is given, ``config.val_fraction`` of them (whole
            groups) are held out for validation.
        out_dir: receives ``last.pt`` (resumable, every epoch), ``best.pt`` (lowest validation
            loss), ``log.csv`` (one row per epoch) and ``split.csv`` (tile ids per subset).
        config: the run's settings.
        val: an explicit validation set (then ``tiles`` is all training data).
        resume: a ``last.pt`` to continue from: same base model and settings (only ``epochs``
            may grow; the cosine schedule then stretches to the new length).
        cache_dir: embedding cache for frozen-encoder scenarios (default ``out_dir/embeddings``).
        progress: show tqdm progress bars (on rank 0).
    """
    out_dir = Path(out_dir)
    rank, world = _init_distributed(model.device)
    torch.manual_seed(config.seed)
    if val is None:
        train_tiles, val_tiles = tiles.split(config.val_fraction, config.seed)
    else:
        train_tiles, val_tiles = tiles, val
    base = base_reference(model)
    trainable = apply_scenario(model, config.scenario, config.enhanced)
    frozen = frozen_encoder(config.scenario)
    cache = EmbeddingCache(cache_dir if cache_dir is not None else out_dir / "embeddings")

    def data(subset: TileSet, augment: str) -> TrainingData:
        return TrainingData(subset, model, frozen_encoder=frozen, augment=augment, seed=config.seed, cache=cache)

    train_data = data(train_tiles, config.augment)
    if len(train_data) == 0:
        raise ValueError("no training tile has an object pixel: check the masks (non-zero = object)")
    val_data = data(val_tiles, "none") if len(val_tiles) else None
    train_sampler = DistributedSampler(train_data, world, rank, shuffle=True, seed=config.seed)
    train_loader = DataLoader(train_data, config.batch_size, sampler=train_sampler)

    parameters = [p for p in model.sam.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    total_steps = config.epochs * len(train_loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    history: list[dict[str, Any]] = []
    best_loss, start_epoch = math.inf, 0
    if resume is not None:
        state = _resume(resume, model, base, config, trainable, optimizer, schedule, val_tiles)
        history, best_loss, start_epoch = state["history"], state["best_loss"], state["epoch"]

    net = ClickTrainingModel(model, frozen)
    step_net: nn.Module = net
    if world > 1:
        device_ids = [model.device.index] if model.device.type == "cuda" else None
        # SAM's decoder has heads a step may not use (multimask outputs); the enhanced one has none.
        unused = config.scenario != "enhanced"
        step_net = DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=unused)
    autocast = torch.autocast(
        model.device.type,
        dtype=torch.bfloat16,
        enabled=config.bf16 and model.device.type == "cuda" and torch.cuda.is_bf16_supported(),
    )
    paths = {name: out_dir / f"{name}.pt" for name in ("best", "last")}
    log_path = out_dir / "log.csv"
    is_main = rank == 0
    if is_main:
        _write_split(out_dir / "split.csv", train_tiles, val_tiles)

    for epoch in range(start_epoch, config.epochs):
        start = time.perf_counter()
        train_data.set_epoch(epoch)
        train_sampler.set_epoch(epoch)
        rng = np.random.default_rng((config.seed, 0, epoch, rank))
        sums = torch.zeros(3, device=model.device)  # loss, iou, batches
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not (progress and is_main))
        for batch in bar:
            extra = int(rng.integers(config.max_extra_clicks + 1))
            loss, iou = training_step(step_net, optimizer, batch, extra, rng, config, autocast)
            schedule.step()
            sums += torch.stack([loss, iou, torch.ones((), device=sums.device)])
            bar.set_postfix(loss=f"{loss.item():.4f}", iou=f"{iou.item():.3f}")
        train_loss, train_iou = _mean(sums)
        val_loss, val_iou = (None, None) if val_data is None else _validate(
            net, val_data, config, autocast, rank, world, progress and is_main
        )
        history.append({
            "epoch": epoch + 1, "steps": (epoch + 1) * len(train_loader), "lr": schedule.get_last_lr()[0],
            "train_loss": train_loss, "train_iou": train_iou, "val_loss": val_loss, "val_iou": val_iou,
            "seconds": time.perf_counter() - start,
        })
        improved = val_loss is None or val_loss < best_loss
        best_loss = best_loss if val_loss is None else min(best_loss, val_loss)
        if is_main:
            meta = dict(base=base, scenario=config.scenario, trainable=trainable, config=config.to_dict(), epoch=epoch + 1)
            training = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                        "history": history, "best_loss": best_loss, "val_ids": list(val_tiles.ids)}
            save_checkpoint(paths["last"], model, training=training, **meta)
            if improved:
                save_checkpoint(paths["best"], model, **meta)
            _write_log(log_path, history)
    if world > 1:
        dist.barrier()
    return FinetuneResult(model, paths["best"], paths["last"], log_path, history, train_tiles, val_tiles)


@torch.no_grad()
def _validate(net, data, config, autocast, rank, world, progress) -> tuple[float, float]:
    """Mean loss and kept-mask IoU over the validation tiles, with the same seeded clicks every
    epoch (tiles sharded over processes, sums reduced)."""
    sampler = DistributedSampler(data, world, rank, shuffle=False)
    rng = np.random.default_rng((config.seed, 1, rank))
    sums = torch.zeros(3, device=net.sam.device)
    for batch in tqdm(DataLoader(data, config.batch_size, sampler=sampler), desc="validation", leave=False, disable=not progress):
        extra = int(rng.integers(config.max_extra_clicks + 1))
        with autocast:
            logits, iou_pred = net(batch["inputs"], batch["gt"], batch["valid"], extra, rng)
        loss, iou = batch_loss(logits, iou_pred, batch["gt"], batch["valid"], config)
        sums += torch.stack([loss, iou, torch.ones((), device=sums.device)])
    return _mean(sums)


def _mean(sums: torch.Tensor) -> tuple[float, float]:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    loss, iou, count = sums.tolist()
    return loss / count, iou / count


def _resume(path, model, base, config, trainable, optimizer, schedule, val_tiles) -> dict[str, Any]:
    content = read_checkpoint(path)
    meta, training = content.get("histoclick"), content.get("training")
    if not isinstance(meta, dict) or training is None:
        raise CheckpointError(f"{path} is not a resumable histoclick checkpoint: resume from a last.pt")
    if meta["base"]["identity"] != base["identity"]:
        raise CheckpointError(
            f"{path} was trained from {meta['base']['identity']}, not from the given base model "
            f"{base['identity']}: resume with the same base model"
        )
    saved = FinetuneConfig.from_dict(meta["config"])
    if dataclasses.replace(saved, epochs=config.epochs) != config:
        changed = [k for k, v in config.to_dict().items() if k != "epochs" and meta["config"][k] != v]
        raise ValueError(
            f"cannot resume {path} with different settings ({', '.join(changed)}): only epochs may change"
        )
    if training["val_ids"] != list(val_tiles.ids):
        raise ValueError(
            f"the validation tiles differ from those of {path}: resume with the same data, "
            "validation fraction, seed and group pattern (see split.csv next to it)"
        )
    apply_tensors(model, content["state_dict"], trainable, path)
    optimizer.load_state_dict(training["optimizer"])
    schedule.load_state_dict(training["schedule"])
    return {"history": training["history"], "best_loss": training["best_loss"], "epoch": meta["epoch"]}


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(history)


def _write_split(path: Path, train: TileSet, val: TileSet) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("id", "group", "subset"))
        for subset, tiles in (("train", train), ("val", val)):
            writer.writerows((i, g, subset) for i, g in zip(tiles.ids, tiles.groups))


def distributed_device(device: str | torch.device = "auto") -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` under torchrun on GPUs, else ``device``."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return resolve_device(device)


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """``(rank, world size)``; joins the process group torchrun describes when there is one."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()
