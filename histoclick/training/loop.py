"""Fine-tuning with simulated clicks, as RITM trains (and as the study fine-tuned SAM).

Each step, for every tile of the batch: first clicks from RITM's multi-point sampler (several
positive and negative points, :class:`~histoclick.training.clicks.FirstClickSampler`), then
``n`` extra clicks (``n`` drawn in ``0..max_extra_clicks`` per batch, RITM's
``max_num_next_clicks=3`` by default), each one from the errors of the model's own previous
prediction, with that prediction's low-resolution logits fed back as mask prompt. The extra
clicks run without gradient and in eval mode, as in RITM's trainer; the loss is taken on the
prediction after the last click (RITM's too). When every tile of the batch has a single click so
far, SAM's three candidate masks are predicted and the best one is trained (SAM's rule for
ambiguous prompts, and what :class:`~histoclick.ClickSession` shows on a first click).

Deliberate deviations from RITM, for SAM: the previous prediction is fed back as SAM's mask
prompt (its low-resolution logits), not as a probability channel of the input; clicks and losses
live in SAM's 256x256 low-resolution mask frame (4x4 input pixels per cell), where the mask
prompt and the decoder's output live, and each click is given to SAM at the centre of its cell
in the 1024-pixel input frame (``_input_xy``). Measured effect: of 10,199 training clicks drawn on
camelyon16_mini's 32 tiles (512 pixels: a cell is 2x2 tile pixels), none lands on a tile pixel
of the other label (``benchmarks/bench_training.py --click-frame-data``), as first clicks avoid
the object's eroded rim and error clicks the outer half of their region. RITM's object merging
and hierarchy sampling do not apply to one target region per tile.

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
from histoclick.models.finetuned import apply_tensors, base_reference, read_metadata, save_checkpoint, trained_digest
from histoclick.models.loading import resolve_device
from histoclick.models.sam_model import SamModel
from histoclick.training.clicks import FIRST_CLICKS, FirstClickSampler, next_training_click
from histoclick.training.data import AUGMENTATIONS, LOW_RES_SCALE, TileSet, TrainingData
from histoclick.training.losses import LOSSES, mask_iou
from histoclick.training.scenarios import apply_scenario, frozen_encoder
from histoclick.training.selection import click_loop_score, training_view

LOG_COLUMNS = ("epoch", "steps", "lr", "train_loss", "train_iou", "val_miou", "val_noc85", "seconds")


@dataclass(frozen=True)
class ClickTrainingConfig:
    """How a decoder learns from simulated clicks: the settings :func:`training_step` uses,
    shared by fine-tuning (:class:`FinetuneConfig`) and online adaptation
    (:class:`~histoclick.adaptation.AdaptConfig`), which extend it.

    scenario: what is trained, ``md``, ``ie_md``, ``whole`` or ``enhanced`` (see :mod:`.scenarios`).
    batch_size: tiles per optimizer step (per process).
    lr: AdamW learning rate (fine-tuning: the peak of a cosine decay; adaptation: constant).
    weight_decay: AdamW decoupled weight decay. grad_clip: max gradient L2 norm (0: no clipping).
    max_extra_clicks: clicks after the first ones, drawn uniformly in ``0..max_extra_clicks`` per
        batch (RITM: 3).
    first_clicks: ``multipoint`` (RITM's multi-point sampler: positive and negative first
        points) or ``single`` (one positive click inside the object, farther from its boundary
        than half the largest distance: the rule of the extra clicks).
    loss: ``nfl`` (Normalized Focal Loss, RITM's), ``dice`` or ``bce``.
    iou_loss_weight: weight of the MSE between predicted and actual IoU (trains the IoU head).
    seed: seeds the clicks, the batches and the new layers' initialisation.
    """

    scenario: str = "md"
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_extra_clicks: int = 3
    first_clicks: str = "multipoint"
    loss: str = "nfl"
    iou_loss_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.batch_size < 1 or self.max_extra_clicks < 0:
            raise ValueError("batch_size must be >= 1 and max_extra_clicks >= 0")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.iou_loss_weight < 0:
            raise ValueError("weight_decay, grad_clip and iou_loss_weight must be >= 0")
        if self.first_clicks not in FIRST_CLICKS:
            raise ValueError(f"first_clicks must be one of {', '.join(FIRST_CLICKS)}, got {self.first_clicks!r}")
        frozen_encoder(self.scenario)  # validates the name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FinetuneConfig(ClickTrainingConfig):
    """Settings of a fine-tuning run: the :class:`ClickTrainingConfig` of each step, and

    epochs: passes over the training tiles (lr decays to 0 along a cosine over all steps).
    augment: ``dihedral`` (a random one of the 8 rotations/flips of each tile per epoch; with a
        frozen encoder each variant's embedding is computed once and cached) or ``none``.
    val_fraction: share of tiles held out for validation (checkpoint selection), whole groups
        (slides) at a time. test_fraction: share held out, by group too, for the reported results.
    val_clicks: simulated clicks per validation tile in the click loop that selects ``best.pt``
        (the highest mean IoU over clicks 1..val_clicks).
    seed: also seeds the split and the augmentations.
    bf16: autocast to bfloat16 on GPUs that support it (the CPU always computes in float32).
    enhanced: the enhanced decoder's shape (scenario ``enhanced`` only).
    """

    epochs: int = 10
    augment: str = "dihedral"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    val_clicks: int = 5
    bf16: bool = True
    enhanced: EnhancedDecoderConfig = field(default_factory=EnhancedDecoderConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        if self.epochs < 1 or self.val_clicks < 1:
            raise ValueError("epochs and val_clicks must be >= 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | os.PathLike = "the settings") -> FinetuneConfig:
        """The config :meth:`to_dict` wrote; ``source`` (a checkpoint path) names it in errors."""
        try:
            return cls(**{**values, "enhanced": EnhancedDecoderConfig(**values["enhanced"])})
        except (TypeError, KeyError, ValueError) as err:
            raise CheckpointError(
                f"{source} holds training settings this histoclick cannot use ({err}): it is damaged "
                "or from another version; start a new run instead of resuming"
            ) from None


@dataclass
class FinetuneResult:
    """What :func:`finetune` produced.

    model: the model after the last epoch (scenario applied, eval mode, a new identity). best:
    checkpoint of the epoch with the highest validation click-loop mIoU (the last epoch without
    validation tiles). last: resumable checkpoint of the last epoch. log: the CSV log. history:
    its rows. train, val, test: the split (report results on ``test``, never on ``val``, which
    chose ``best``). best_epoch: the epoch ``best`` holds.
    """

    model: SamModel
    best: Path
    last: Path
    log: Path
    history: list[dict[str, Any]]
    train: TileSet
    val: TileSet
    test: TileSet
    best_epoch: int


class ClickTrainingModel(nn.Module):
    """One training forward pass of SAM (or the enhanced decoder) with simulated clicks.

    Wrapping the whole iterative pass in one module lets DistributedDataParallel see a single
    forward per backward.
    """

    def __init__(self, model: SamModel, frozen_encoder: bool, first_clicks: str = "multipoint") -> None:
        super().__init__()
        self.sam = model.sam
        self.frozen_encoder = frozen_encoder
        self.sampler = FirstClickSampler() if first_clicks == "multipoint" else None

    def forward(
        self,
        inputs: torch.Tensor,
        gt: torch.Tensor,
        valid: torch.Tensor,
        extra_clicks: int,
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the clicks on a batch; returns the last prediction's ``(B, M, S, S)``
        low-resolution logits and ``(B, M)`` IoU estimates (``M`` = 3 when every tile has a
        single click, SAM's rule for an ambiguous prompt; else 1).

        inputs: ``(B, 256, 64, 64)`` embeddings (frozen encoder) or ``(B, 3, 1024, 1024)`` images.
        gt, valid: ``(B, S, S)`` bool in the low-resolution frame.
        """
        features = inputs if self.frozen_encoder else self.sam.image_encoder(inputs)
        gt_np, valid_np = gt.cpu().numpy(), valid.cpu().numpy()
        if self.sampler is None:
            empty = np.zeros_like(gt_np[0])
            clicks = [[next_training_click(g, empty, rng, v)] for g, v in zip(gt_np, valid_np)]
        else:
            clicks = [self.sampler.sample(g, rng, v) for g, v in zip(gt_np, valid_np)]
            longest = max(len(c) for c in clicks)
            clicks = [c + [None] * (longest - len(c)) for c in clicks]  # padding points
        single = all(len(c) == 1 for c in clicks)
        previous = None
        training = self.sam.training
        self.sam.eval()  # RITM simulates the extra clicks with the network in eval mode
        try:
            with torch.no_grad():
                for step in range(extra_clicks):
                    logits, iou = self._decode(features.detach(), clicks, previous, multimask=step == 0 and single)
                    best = iou.argmax(dim=1)
                    previous = logits[torch.arange(len(logits)), best][:, None]
                    predicted = (previous[:, 0] > 0).cpu().numpy()
                    for b, sample_clicks in enumerate(clicks):
                        sample_clicks.append(next_training_click(gt_np[b], predicted[b], rng, valid_np[b]))
        finally:
            self.sam.train(training)
        return self._decode(features, clicks, previous, multimask=extra_clicks == 0 and single)

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
    config: ClickTrainingConfig,
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
    config: ClickTrainingConfig,
    autocast: torch.autocast | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch of :class:`TrainingData` items; returns the detached
    ``(loss, kept-mask IoU)``. Gradients are clipped to ``config.grad_clip``. A non-finite
    loss raises FloatingPointError before any weight changes."""
    with autocast if autocast is not None else contextlib.nullcontext():
        logits, iou_pred = net(batch["inputs"], batch["gt"], batch["valid"], extra_clicks, rng)
    loss, iou = batch_loss(logits, iou_pred, batch["gt"], batch["valid"], config)
    finite = torch.isfinite(loss.detach()).float()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)  # every process stops together
    if not finite.item():
        raise FloatingPointError(f"the loss is {loss.item()} (not finite), so the training diverged")
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
    test: TileSet | None = None,
    resume: str | os.PathLike | None = None,
    overwrite: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune ``model`` (the base SAM, changed in place) on annotated tiles.

    Args:
        model: base model from :func:`histoclick.load_model`, on the device to train on (under
            torchrun: ``distributed_device()``). On return it holds the last epoch's weights, is
            in eval mode and has a new identity (and, when its encoder was trained, a new
            encoder identity, so no embedding cached for the base is reused).
        tiles: training tiles; unless ``val`` is given, ``config.val_fraction`` and
            ``config.test_fraction`` of them (whole groups: slides) are held out for
            validation (checkpoint selection) and test (the reported results).
        out_dir: receives ``last.pt`` (resumable, every epoch), ``best.pt`` (the epoch with the
            best validation click loop, see :mod:`.selection`), ``log.csv`` (one row per epoch)
            and ``split.csv`` (tile ids per subset). A folder that already holds a run is
            refused unless ``resume`` or ``overwrite`` is given.
        config: the run's settings.
        val: an explicit validation set (then ``tiles`` is all training data).
        test: an explicit test set, with ``val`` (default: none).
        resume: a ``last.pt`` to continue from: same base model and settings (only ``epochs``
            may grow; the cosine schedule then stretches to the new length).
        overwrite: replace the run in ``out_dir`` (its checkpoints and log are deleted first).
        cache_dir: embedding cache for frozen-encoder scenarios (default ``out_dir/embeddings``).
        progress: show tqdm progress bars (on rank 0).

    Raises:
        FloatingPointError: the loss became NaN or infinite (the run stops; checkpoints of
            earlier epochs stay, no non-finite weights are ever written).
        FileExistsError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set.
    """
    out_dir = Path(out_dir).expanduser()
    rank, world = _init_distributed(model.device)
    paths = {name: out_dir / f"{name}.pt" for name in ("best", "last")}
    log_path = out_dir / "log.csv"
    if rank == 0:
        _prepare_out_dir(out_dir, [*paths.values(), log_path], resume, overwrite)
    torch.manual_seed(config.seed)
    if val is None:
        train_tiles, val_tiles, test_tiles = tiles.split(config.val_fraction, config.test_fraction, config.seed)
    else:
        train_tiles, val_tiles, test_tiles = tiles, val, test if test is not None else tiles.subset([])
    base = base_reference(model)
    trainable = apply_scenario(model, config.scenario, config.enhanced)
    frozen = frozen_encoder(config.scenario)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else out_dir / "embeddings"
    cache = EmbeddingCache(cache_dir)

    train_data = TrainingData(
        train_tiles, model, frozen_encoder=frozen, augment=config.augment, seed=config.seed, cache=cache
    )
    if len(train_data) == 0:
        raise ValueError("no training tile has an object pixel: check the masks (non-zero = object)")
    train_sampler = DistributedSampler(train_data, world, rank, shuffle=True, seed=config.seed)
    train_loader = DataLoader(train_data, config.batch_size, sampler=train_sampler)

    parameters = [p for p in model.sam.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    total_steps = config.epochs * len(train_loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    history: list[dict[str, Any]] = []
    best_score, start_epoch = -math.inf, 0
    if resume is not None:
        state = _resume(resume, model, base, config, trainable, optimizer, schedule, val_tiles)
        history, best_score, start_epoch = state["history"], state["best_score"], state["epoch"]

    net = ClickTrainingModel(model, frozen, config.first_clicks)
    step_net: nn.Module = net
    if world > 1:
        device_ids = [model.device.index] if model.device.type == "cuda" else None
        # SAM's decoder has heads a step may not use (multimask outputs).
        step_net = DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=True)
    autocast = torch.autocast(
        model.device.type,
        dtype=torch.bfloat16,
        enabled=config.bf16 and model.device.type == "cuda" and torch.cuda.is_bf16_supported(),
    )
    is_main = rank == 0
    if is_main:
        _write_split(out_dir / "split.csv", {"train": train_tiles, "val": val_tiles, "test": test_tiles})

    try:
        for epoch in range(start_epoch, config.epochs):
            start = time.perf_counter()
            train_data.set_epoch(epoch)
            train_sampler.set_epoch(epoch)
            rng = np.random.default_rng((config.seed, 0, epoch, rank))
            sums = torch.zeros(3, device=model.device)  # loss, iou, batches
            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not (progress and is_main))
            model.sam.train()
            for step, batch in enumerate(bar):
                extra = int(rng.integers(config.max_extra_clicks + 1))
                try:
                    loss, iou = training_step(step_net, optimizer, batch, extra, rng, config, autocast)
                except FloatingPointError as err:
                    kept = "the checkpoints of earlier epochs are kept" if history else "no checkpoint was written"
                    raise FloatingPointError(
                        f"training stopped at epoch {epoch + 1}, step {step + 1}: {err}; {kept} "
                        f"in {out_dir}; lower the learning rate (now {config.lr:g})"
                    ) from None
                schedule.step()
                sums += torch.stack([loss, iou, torch.ones((), device=sums.device)])
                bar.set_postfix(loss=f"{loss.item():.4f}", iou=f"{iou.item():.3f}")
            model.sam.eval()
            train_loss, train_iou = _mean(sums)
            score = None
            if len(val_tiles):
                score = click_loop_score(
                    training_view(model, frozen), val_tiles, config.val_clicks,
                    cache_dir=cache_dir if frozen else None, rank=rank, world=world,
                )
            history.append({
                "epoch": epoch + 1, "steps": (epoch + 1) * len(train_loader), "lr": schedule.get_last_lr()[0],
                "train_loss": train_loss, "train_iou": train_iou,
                "val_miou": None if score is None else score.miou,
                "val_noc85": None if score is None else score.noc85,
                "seconds": time.perf_counter() - start,
            })
            improved = score is None or score.miou > best_score
            best_score = best_score if score is None else max(best_score, score.miou)
            if is_main:
                meta = dict(base=base, scenario=config.scenario, trainable=trainable, config=config.to_dict(), epoch=epoch + 1)
                training = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                            "history": history, "best_score": best_score, "val_ids": list(val_tiles.ids)}
                save_checkpoint(paths["last"], model, training=training, **meta)
                if improved:
                    save_checkpoint(paths["best"], model, **meta)
                _write_log(log_path, history)
    finally:
        model.sam.eval()
    if world > 1:
        dist.barrier()
    params = dict(model.sam.named_parameters())
    model.weights_changed(
        trained_digest(base, {name: params[name] for name in trainable}),
        f"fine-tuned in this process ({config.scenario}, {out_dir})",
        encoder=not frozen,
    )
    return FinetuneResult(
        model, paths["best"], paths["last"], log_path, history, train_tiles, val_tiles, test_tiles,
        _best_epoch(history),
    )


def _best_epoch(history: list[dict[str, Any]]) -> int:
    """The epoch best.pt holds: the first with the highest validation mIoU, else the last."""
    scored = [row for row in history if row["val_miou"] is not None]
    if not scored:
        return history[-1]["epoch"] if history else 0
    return max(scored, key=lambda row: (row["val_miou"], -row["epoch"]))["epoch"]


def _prepare_out_dir(out_dir: Path, outputs: list[Path], resume, overwrite: bool) -> None:
    """Refuse to write over another run, unless resuming it or told to replace it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"the output folder {out_dir} is a file: choose a folder for the run")
    existing = [path for path in outputs if path.exists()]
    if existing and resume is None and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a training run ({', '.join(p.name for p in existing)}): resume it "
            f"(--resume {out_dir / 'last.pt'}), replace it (--overwrite), or choose another folder"
        )
    if overwrite and resume is None:
        for path in existing:
            path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _mean(sums: torch.Tensor) -> tuple[float, float]:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    loss, iou, count = sums.tolist()
    return loss / count, iou / count


def _resume(path, model, base, config, trainable, optimizer, schedule, val_tiles) -> dict[str, Any]:
    content = read_checkpoint(path)
    meta, training = read_metadata(path, content), content.get("training")
    if not isinstance(training, dict) or not {"optimizer", "schedule", "history", "val_ids"} <= set(training):
        raise CheckpointError(f"{path} is not a resumable histoclick checkpoint: resume from a last.pt")
    if meta.base["identity"] != base["identity"]:
        raise CheckpointError(
            f"{path} was trained from {meta.base['identity']}, not from the given base model "
            f"{base['identity']}: resume with the same base model"
        )
    saved = FinetuneConfig.from_dict(meta.config, path)
    if dataclasses.replace(saved, epochs=config.epochs) != config:
        changed = [k for k, v in config.to_dict().items() if k != "epochs" and saved.to_dict()[k] != v]
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
    best_score = training.get("best_score", -math.inf)
    return {"history": training["history"], "best_score": best_score, "epoch": meta.epoch}


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(history)


def _write_split(path: Path, subsets: dict[str, TileSet]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("id", "group", "subset"))
        for subset, tiles in subsets.items():
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
