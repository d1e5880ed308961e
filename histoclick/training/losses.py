"""Segmentation losses on mask logits, one value per mask, restricted to valid pixels.

Every loss takes ``logits`` and ``target`` of shape ``(..., H, W)`` (target 1 = object, 0 =
background) and an optional ``valid`` mask of the same shape (False on padding, which counts
nowhere), and returns a tensor of shape ``(...)``: one loss per mask, so callers can pick the
best of SAM's candidate masks before averaging.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

MaskLoss = Callable[..., torch.Tensor]  # (logits, target, valid) -> per-mask loss


def _weights(target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(target) if valid is None else valid.to(target.dtype)


def normalized_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    alpha: float = 0.5,
    gamma: float = 2.0,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Normalized Focal Loss, as RITM's ``NormalizedFocalLossSigmoid``.

    The focal weights ``(1 - pt) ** gamma`` are rescaled (without gradient through the scale) so
    that they sum to the number of valid pixels; the loss is then averaged over those pixels.
    ``alpha`` weighs object pixels (``1 - alpha`` background); RITM trains with ``alpha=0.5``,
    ``gamma=2``.
    """
    target = target.to(logits.dtype)
    weight = _weights(target, valid)
    prob = torch.sigmoid(logits)
    alpha_t = torch.where(target > 0.5, alpha * weight, (1 - alpha) * weight)
    pt = torch.where(weight > 0, 1.0 - (target - prob).abs(), torch.ones_like(prob))
    beta = (1.0 - pt) ** gamma
    pixels = weight.sum(dim=(-2, -1), keepdim=True)
    scale = (pixels / (beta.sum(dim=(-2, -1), keepdim=True) + eps)).detach()
    loss = -alpha_t * beta * scale * torch.log(torch.clamp(pt + eps, max=1.0))
    return (loss * weight).sum(dim=(-2, -1)) / (pixels[..., 0, 0] + eps)


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, *, smooth: float = 1.0
) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 |P.T| + s) / (|P| + |T| + s)`` on sigmoid probabilities."""
    target = target.to(logits.dtype)
    weight = _weights(target, valid)
    prob = torch.sigmoid(logits) * weight
    target = target * weight
    overlap = (prob * target).sum(dim=(-2, -1))
    total = prob.sum(dim=(-2, -1)) + target.sum(dim=(-2, -1))
    return 1.0 - (2.0 * overlap + smooth) / (total + smooth)


def bce_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy on logits, averaged over valid pixels."""
    target = target.to(logits.dtype)
    weight = _weights(target, valid)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (loss * weight).sum(dim=(-2, -1)) / weight.sum(dim=(-2, -1)).clamp(min=1.0)


LOSSES: dict[str, MaskLoss] = {
    "nfl": normalized_focal_loss,
    "dice": dice_loss,
    "bce": bce_loss,
}


def mask_iou(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """IoU of ``logits > 0`` with the target over valid pixels, per mask (1 when both are empty)."""
    pred = logits > 0
    gt = target > 0.5
    if valid is not None:
        pred, gt = pred & valid, gt & valid
    inter = (pred & gt).sum(dim=(-2, -1)).float()
    union = (pred | gt).sum(dim=(-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.ones_like(union))
