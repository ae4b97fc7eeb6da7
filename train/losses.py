"""Training loss and Dice metrics on low-resolution mask logits (docs/reference_systems.md section 6.2).

The loss is the public recipe written out (MONAI is not a dependency): soft Dice with squared
predictions in the denominator, plus BCE on the logits, plus the MSE between the predicted IoU and
the IoU the thresholded prediction actually reaches. Every term is a mean of per-object values
(a step's B images x K objects), so the gradient of a batch split across processes and averaged
by DDP equals the whole batch's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

__all__ = ["LossWeights", "LossTerms", "soft_dice_loss", "hard_dice", "mask_iou", "segmentation_loss"]

_SMOOTH = 1e-5  # MONAI DiceLoss's smooth_nr = smooth_dr


@dataclass(frozen=True)
class LossWeights:
    dice: float = 1.0
    bce: float = 1.0
    iou: float = 1.0


@dataclass(frozen=True)
class LossTerms:
    """Scalar tensors: the weighted ``total`` (differentiable) and its three unweighted terms."""

    total: torch.Tensor
    dice: torch.Tensor
    bce: torch.Tensor
    iou: torch.Tensor


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per sample ``1 - (2 sum(p t) + s) / (sum(p^2) + sum(t^2) + s)``, p = sigmoid(logits); shape (B,)."""
    p, t = _flat(torch.sigmoid(logits)), _flat(target)
    return 1 - (2 * (p * t).sum(1) + _SMOOTH) / ((p * p).sum(1) + (t * t).sum(1) + _SMOOTH)


def hard_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample Dice of ``logits > 0`` against a {0, 1} target, (B,); 1 when both are empty."""
    pred, t = _flat(logits > 0).float(), _flat(target > 0.5).float()
    inter, total = (pred * t).sum(1), pred.sum(1) + t.sum(1)
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample IoU of ``logits > 0`` against the target, (B,); 1 when both are empty."""
    pred, t = _flat(logits > 0), _flat(target > 0.5)
    inter, union = (pred & t).sum(1).float(), (pred | t).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def segmentation_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor,
                      weights: LossWeights = LossWeights()) -> LossTerms:
    """logits (B, 1, S, S), iou_pred (B, 1), target (B, 1, S, S) in {0, 1}; computed in float32."""
    logits, iou_pred, target = logits.float(), iou_pred.float(), target.float()
    dice = soft_dice_loss(logits, target).mean()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    iou = F.mse_loss(iou_pred.reshape(-1), mask_iou(logits.detach(), target))
    return LossTerms(weights.dice * dice + weights.bce * bce + weights.iou * iou, dice, bce, iou)
