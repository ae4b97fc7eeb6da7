"""Simulated clicks for training (``--click-prompts R``): after the box prediction, R rounds
that each add one click per object and decode again, so the decoder learns what SAM's point and
mask prompts mean for medical masks (LiteMedSAM was trained with boxes only, and its clicks
hurt: docs/interactive.md).

Each round clicks a pixel drawn uniformly from the object's error region (prediction and label
disagree), foreground (label 1) where the label has the object, background (0) elsewhere, as
the evaluator's clicks fall in the error; it keeps all earlier clicks and the box (corners 2, 3),
and gives the previous round's low-res logits (detached) as the mask prompt to half the objects.
The loss is taken over every round, so one step trains the box and every click count.
"""
from __future__ import annotations

import torch

__all__ = ["click_rounds"]


def _next_click(logits: torch.Tensor, target: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One click per object from logits (N, 1, L, L) and target (N, 1, L, L): model-pixel xy
    (N, 1, 2) and labels (N, 1). An object without error is clicked anywhere (on its label)."""
    n, _, low, _ = logits.shape
    error = ((logits > 0) != (target > 0.5)).reshape(n, -1).float()
    weights = error + (error.sum(1, keepdim=True) == 0).float()  # no error: any pixel
    index = torch.multinomial(weights, 1).squeeze(1)
    rows, cols = index // low, index % low
    labels = target.reshape(n, -1)[torch.arange(n), index].gt(0.5).float()
    xy = torch.stack([cols, rows], 1).float() * scale
    return xy[:, None], labels[:, None]


def click_rounds(model, embeddings: torch.Tensor, boxes: torch.Tensor, first: tuple[torch.Tensor, torch.Tensor],
                 target: torch.Tensor, rounds: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The box prediction ``first`` (masks, IoU) followed by ``rounds`` click rounds, stacked along
    the batch: masks ((R + 1) N, 1, L, L), IoU ((R + 1) N, 1); the loss target is ``target``
    repeated R + 1 times. ``embeddings`` (N, C, h, w) one per object, ``boxes`` (N, 4)."""
    masks, iou = first
    outputs_m, outputs_i = [masks], [iou]
    n, low = len(boxes), masks.shape[-1]
    coords = boxes.reshape(n, 2, 2).float()
    labels = torch.tensor([2.0, 3.0], device=boxes.device).repeat(n, 1)
    has_mask = (torch.arange(n, device=boxes.device) % 2).float()
    for _ in range(rounds):
        with torch.no_grad():
            xy, label = _next_click(masks.detach().float(), target, image_size / low)
        coords, labels = torch.cat([xy, coords], 1), torch.cat([label, labels], 1)
        masks, iou = model.decode_prompts(embeddings, coords, labels, masks.detach(), has_mask)
        outputs_m.append(masks)
        outputs_i.append(iou)
    return torch.cat(outputs_m), torch.cat(outputs_i)
