"""Matplotlib (Agg) figures: case overlays and the run summary. Pure drawing, no file discovery.

Conventions: 2D images (H, W, 3) uint8 or (H, W); 3D volumes (D, H, W); label maps of the same
spatial shape; boxes in the challenge layout, 2D `[x_min, y_min, x_max, y_max]`, 3D
`[x_min, y_min, z_min, x_max, y_max, z_max]`, x = column, y = row, z = slice, maxima inclusive.
Ground truth is drawn green, prediction red, box prompts yellow dashed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from scipy import ndimage  # noqa: E402

from challenge.atomic import atomic_path  # noqa: E402

__all__ = ["DPI", "scaled_size", "object_slices", "draw_case_2d", "draw_case_3d", "draw_summary"]

DPI = 100
GT_COLOUR, PRED_COLOUR, BOX_COLOUR = "#00e000", "#ff2020", "#ffd800"


def scaled_size(height: int, width: int, max_side: int, enlarge: bool = False) -> tuple[int, int]:
    """Pixel size (height, width) of an image shrunk so its longest side is at most `max_side`
    (with `enlarge`, scaled so the longest side is exactly `max_side`)."""
    scale = max_side / max(height, width)
    scale = scale if enlarge else min(1.0, scale)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _contours(ax, labels: np.ndarray | None, colour: str, only: int | None = None) -> None:
    """Outline every label (or only label `only`) of a (H, W) map, each on its own bounding box."""
    if labels is None or not labels.any():
        return
    for index, box in enumerate(ndimage.find_objects(labels.astype(np.int64, copy=False)), start=1):
        if box is None or (only is not None and index != only):
            continue
        rows = slice(max(box[0].start - 1, 0), box[0].stop + 1)
        cols = slice(max(box[1].start - 1, 0), box[1].stop + 1)
        mask = np.pad(labels[rows, cols] == index, 1).astype(np.float32)  # closed outlines at the crop edge
        ys = np.arange(rows.start - 1, rows.start - 1 + mask.shape[0])
        xs = np.arange(cols.start - 1, cols.start - 1 + mask.shape[1])
        ax.contour(xs, ys, mask, levels=[0.5], colors=colour, linewidths=1.2)


def _box(ax, x_min: float, y_min: float, x_max: float, y_max: float) -> None:
    ax.add_patch(Rectangle((x_min - 0.5, y_min - 0.5), x_max - x_min + 1, y_max - y_min + 1, fill=False,
                           edgecolor=BOX_COLOUR, linestyle="--", linewidth=1.0, zorder=3))


def _panel(fig, rect: Sequence[float], image: np.ndarray, caption: str):
    ax = fig.add_axes(rect)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.text(0.01, 0.99, caption, transform=ax.transAxes, va="top", ha="left", fontsize=8, color="white",
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 2, "edgecolor": "none"})
    return ax


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI)
    plt.close(fig)


def draw_case_2d(path: Path, image: np.ndarray, gts: np.ndarray | None, segs: np.ndarray | None,
                 boxes: np.ndarray, title: str, max_side: int = 1600) -> tuple[int, int]:
    """Whole image with outlines and boxes, saved as a PNG of `scaled_size(H, W, max_side)` pixels.

    Returns the (height, width) in pixels of the written PNG.
    """
    height, width = scaled_size(image.shape[0], image.shape[1], max_side)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = _panel(fig, [0, 0, 1, 1], image, title)
    _contours(ax, gts, GT_COLOUR)
    _contours(ax, segs, PRED_COLOUR)
    for x_min, y_min, x_max, y_max in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        _box(ax, x_min, y_min, x_max, y_max)
    _save(fig, path)
    return height, width


def object_slices(boxes: np.ndarray, gts: np.ndarray | None) -> list[tuple[int, int]]:
    """(label, slice index) per object: the middle slice `(z_min + z_max) // 2` of each 3D box
    (label = row + 1); without boxes, the middle slice of each ground-truth label's z-extent."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    if len(boxes):
        return [(k + 1, int((b[2] + b[5]) // 2)) for k, b in enumerate(boxes)]
    if gts is None:
        return []
    return [(k + 1, (box[0].start + box[0].stop - 1) // 2)
            for k, box in enumerate(ndimage.find_objects(gts.astype(np.int64, copy=False))) if box is not None]


def draw_case_3d(path: Path, volume: np.ndarray, gts: np.ndarray | None, segs: np.ndarray | None,
                 boxes: np.ndarray, title: str, panel_side: int = 400, max_objects: int = 12,
                 columns: int = 4) -> tuple[int, int]:
    """One panel per object (its middle slice, all outlines on that slice, its own box), laid out
    `columns` wide. Panels are `scaled_size(H, W, panel_side, enlarge=True)` pixels each.

    Returns the (height, width) in pixels of the written PNG.
    """
    objects = object_slices(boxes, gts)[:max_objects] or [(0, volume.shape[0] // 2)]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    cols = min(columns, len(objects))
    rows = math.ceil(len(objects) / cols)
    panel_h, panel_w = scaled_size(volume.shape[1], volume.shape[2], panel_side, enlarge=True)
    fig = plt.figure(figsize=(cols * panel_w / DPI, rows * panel_h / DPI), dpi=DPI)
    for index, (label, z) in enumerate(objects):
        z = min(max(z, 0), volume.shape[0] - 1)
        r, c = divmod(index, cols)
        caption = f"{title}\nobject {label}, slice {z}" if index == 0 else f"object {label}, slice {z}"
        ax = _panel(fig, [c / cols, 1 - (r + 1) / rows, 1 / cols, 1 / rows], volume[z], caption)
        _contours(ax, None if gts is None else gts[z], GT_COLOUR)
        _contours(ax, None if segs is None else segs[z], PRED_COLOUR)
        if 1 <= label <= len(boxes):
            x_min, y_min, _, x_max, y_max, _ = boxes[label - 1]
            _box(ax, x_min, y_min, x_max, y_max)
    _save(fig, path)
    return rows * panel_h, cols * panel_w


def draw_summary(path: Path, modalities: Sequence[str], dsc: Sequence[float], nsd: Sequence[float | None],
                 times: dict[str, float] | None = None, cases: Sequence[str] = ()) -> None:
    """Box plots of DSC and NSD per modality (NaN left out), and running time per case when given."""
    names = sorted(set(modalities))
    panels = 3 if times else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.5), dpi=DPI, layout="constrained")
    for ax, values, label in ((axes[0], dsc, "DSC"), (axes[1], nsd, "NSD")):
        groups = [[v for m, v in zip(modalities, values) if m == name and v is not None and not math.isnan(v)]
                  for name in names]
        ax.boxplot(groups, tick_labels=names, showfliers=False)
        for position, group in enumerate(groups, start=1):  # every case as a dot beside its box
            jitter = np.linspace(-0.15, 0.15, len(group)) if len(group) > 1 else np.zeros(len(group))
            ax.scatter(position + jitter, group, s=8, color="black", alpha=0.5, zorder=3)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{label} per modality")
        ax.tick_params(axis="x", rotation=45)
    if times:
        ordered = [c for c in cases if c in times] or sorted(times)
        colours = {name: plt.get_cmap("tab20")(i % 20) for i, name in enumerate(names)}
        lookup = dict(zip(cases, modalities))
        axes[2].bar(range(len(ordered)), [times[c] for c in ordered],
                    color=[colours.get(lookup[c], "grey") if c in lookup else "grey" for c in ordered])
        axes[2].set_title("running time per case")
        if len(ordered) <= 30:
            axes[2].set_xticks(range(len(ordered)), [Path(c).stem for c in ordered], rotation=90, fontsize=7)
        else:
            axes[2].set_xlabel("case (sorted by name)")
        axes[2].set_ylabel("seconds")
    _save(fig, path)
