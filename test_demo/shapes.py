"""Phantom building blocks: primitives painted into a (D, H, W) volume slab by slab.

A phantom is a list of primitives painted in order into two arrays of the same (D, H, W) grid:
a float32 intensity slab (modality units: HU, SUV, echogenicity, ...) and the uint16 label map
`gts`. 2D images use D = 1. Coordinates are voxel indices (z = slice, y = row, x = column).
Rendering works on slabs of slices so memory stays bounded on a 287 x 512 x 512 CT volume.

Painting rules of a primitive (fields of `Primitive`):
- `label` > 0 writes that label where the primitive's mask is; 0 leaves labels untouched.
- `within` restricts the mask to voxels whose current label equals it (0: background only, so
  objects touch instead of overlapping; k: only inside object k, e.g. a nucleus in its cell);
  None paints everywhere (a lesion overwriting its organ).
- `additive` adds the value (X-ray attenuation sums over overlapping structures; then `within`
  restricts only the label, not the intensity); otherwise the value replaces the intensity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

F32 = np.float32
BBox = tuple[int, int, int, int, int, int]  # z0, z1, y0, y1, x0, x1 (half-open)


@dataclass(frozen=True, kw_only=True)
class Primitive:
    value: float
    label: int = 0
    within: int | None = None
    additive: bool = False

    def extent(self) -> tuple[float, float, float, float, float, float]:
        """Unclipped (z_lo, z_hi, y_lo, y_hi, x_lo, x_hi) in voxels, inclusive bounds."""
        raise NotImplementedError

    def evaluate(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray | float]:
        """Mask (bool, (z1-z0, y1-y0, x1-x0)) and value (same shape or scalar) on a block."""
        raise NotImplementedError

    def bbox(self, shape: tuple[int, int, int]) -> BBox | None:
        """Half-open voxel box of the primitive clipped to `shape`, or None when outside."""
        lo_hi = self.extent()
        out: list[int] = []
        for axis, size in enumerate(shape):
            lo = max(0, math.floor(lo_hi[2 * axis]))
            hi = min(size, math.ceil(lo_hi[2 * axis + 1]) + 1)
            if lo >= hi:
                return None
            out += [lo, hi]
        return tuple(out)  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True)
class Blob(Primitive):
    """Ellipsoid (ellipse when D = 1) with a smoothly wobbling boundary, rotated about the z axis.

    A point is inside when its normalised radius r < 1 + sum(amp * sin(f . q + phase)), with
    q = (dz / rz, v / ry, u / rx) in the blob's rotated frame (u along angle, v across).
    `wobble` rows are (fz, fv, fu, amp, phase); keep sum(|amp|) < 0.5 so the centre is inside.
    Intensity ramps linearly from `value` at the boundary to `center_value` at the centre, plus
    `shade` . q (directional lighting, crown-to-root gradients).
    A blob with rz = 0.5 and integer cz covers exactly slice cz (single-slice 3D objects); with
    rz = inf and no z wobble it is a prism through every slice (body outline, spine), evaluated on
    one slice and broadcast.
    """

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    angle: float = 0.0
    wobble: tuple[tuple[float, float, float, float, float], ...] = ()
    center_value: float | None = None
    shade: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def extent(self) -> tuple[float, float, float, float, float, float]:
        grow = 1.0 + sum(abs(w[3]) for w in self.wobble)
        (cz, cy, cx), (rz, ry, rx) = self.center, self.radii
        c, s = math.cos(self.angle), math.sin(self.angle)
        ex = grow * math.hypot(rx * c, ry * s)
        ey = grow * math.hypot(rx * s, ry * c)
        ez = 1e9 if math.isinf(rz) else grow * rz
        return cz - ez, cz + ez, cy - ey, cy + ey, cx - ex, cx + ex

    def evaluate(self, z0, z1, y0, y1, x0, x1):
        (cz, cy, cx), (rz, ry, rx) = self.center, self.radii
        if math.isinf(rz) and z1 - z0 > 1:
            mask, value = self.evaluate(z0, z0 + 1, y0, y1, x0, x1)
            shape = (z1 - z0, y1 - y0, x1 - x0)
            return np.broadcast_to(mask, shape), value if np.isscalar(value) else np.broadcast_to(value, shape)
        dz = ((np.arange(z0, z1, dtype=F32) - F32(cz)) / F32(rz))[:, None, None]
        yy = (np.arange(y0, y1, dtype=F32) - F32(cy))[None, :, None]
        xx = (np.arange(x0, x1, dtype=F32) - F32(cx))[None, None, :]
        c, s = F32(math.cos(self.angle)), F32(math.sin(self.angle))
        u = (c * xx + s * yy) / F32(rx)
        v = (c * yy - s * xx) / F32(ry)
        r = np.sqrt(dz * dz + u * u + v * v)
        limit: np.ndarray | float = 1.0
        for fz, fv, fu, amp, phase in self.wobble:
            limit = limit + F32(amp) * np.sin(F32(fz) * dz + F32(fv) * v + F32(fu) * u + F32(phase))
        mask = r < limit
        ramp = self.center_value is not None
        if not ramp and not any(self.shade):
            return mask, self.value
        value = np.full(mask.shape, self.value, F32)
        if ramp:
            value += F32(self.center_value - self.value) * np.clip(1.0 - r / limit, 0.0, 1.0)
        sz, sy, sx = self.shade
        value += F32(sz) * dz + F32(sy) * v + F32(sx) * u
        return mask, value


@dataclass(frozen=True, kw_only=True)
class Band(Primitive):
    """Rows between two column-wise curves, the same on every slice (OCT layers, skin layers).

    `top` and `bottom` are float arrays of length W (row coordinates); a pixel (y, x) is inside
    when top[x] <= y < bottom[x]. Intensity ramps from `value` at the top to `bottom_value`.
    """

    top: np.ndarray
    bottom: np.ndarray
    bottom_value: float | None = None

    def extent(self):
        return -1e9, 1e9, float(self.top.min()), float(self.bottom.max()), 0.0, float(len(self.top) - 1)

    def evaluate(self, z0, z1, y0, y1, x0, x1):
        yy = np.arange(y0, y1, dtype=F32)[:, None]
        top = self.top[x0:x1].astype(F32)[None, :]
        bottom = self.bottom[x0:x1].astype(F32)[None, :]
        mask = np.broadcast_to((yy >= top) & (yy < bottom), (z1 - z0, y1 - y0, x1 - x0))
        if self.bottom_value is None:
            return mask, self.value
        t = np.clip((yy - top) / np.maximum(bottom - top, 1.0), 0.0, 1.0)
        return mask, np.broadcast_to(self.value + (self.bottom_value - self.value) * t, mask.shape)


@dataclass(frozen=True, kw_only=True)
class Curve(Primitive):
    """A thick polyline on slice `z` (vessels, hairs, jaw bones); points are (x, y) pixels."""

    points: np.ndarray
    thickness: int
    z: int = 0

    def extent(self):
        half = self.thickness / 2 + 1
        x, y = self.points[:, 0], self.points[:, 1]
        return self.z, self.z, y.min() - half, y.max() + half, x.min() - half, x.max() + half

    def evaluate(self, z0, z1, y0, y1, x0, x1):
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        pts = np.round((self.points - (x0, y0)) * 16).astype(np.int32)
        cv2.polylines(canvas, [pts], False, 1, max(1, int(self.thickness)), cv2.LINE_8, 4)
        mask = np.zeros((z1 - z0, y1 - y0, x1 - x0), bool)
        mask[self.z - z0] = canvas.astype(bool)
        return mask, self.value


class SmoothField:
    """Band-limited Gaussian noise on a (D, H, W) grid: a coarse random grid, interpolated.

    `cell` = (cz, cy, cx) voxels between grid nodes sets the feature size. Evaluated per slab
    (linear in z between two coarse slices, bicubic in-plane), so a 75 M voxel field never
    exists at once. Values are roughly unit variance.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int, int], cell: tuple[float, float, float]):
        self.shape = shape
        self.cell = tuple(max(1.0, float(c)) for c in cell)
        gshape = tuple(int(math.ceil(n / c)) + 2 for n, c in zip(shape, self.cell))
        self.grid = rng.standard_normal(gshape).astype(F32)
        _, cy, cx = self.cell
        self._size = (int(math.ceil((gshape[2] - 1) * cx)) + 1, int(math.ceil((gshape[1] - 1) * cy)) + 1)

    def block(self, z0: int, z1: int) -> np.ndarray:
        _, h, w = self.shape
        out = np.empty((z1 - z0, h, w), F32)
        for i, z in enumerate(range(z0, z1)):
            gz = z / self.cell[0]
            lo = int(gz)
            t = F32(gz - lo)
            plane = (1 - t) * self.grid[lo] + t * self.grid[lo + 1]
            out[i] = cv2.resize(plane, self._size, interpolation=cv2.INTER_CUBIC)[:h, :w]
        return out


def wobble(rng: np.random.Generator, amplitude: float, terms: int = 3, freq: tuple[float, float] = (1.0, 3.0), flat: bool = True) -> tuple:
    """Random boundary wobble rows (fz, fv, fu, amp, phase) with sum(|amp|) = amplitude.

    `flat` keeps fz = 0 (2D images and single-slice objects); frequencies in cycles per radius.
    """
    rows = []
    weights = rng.dirichlet(np.ones(terms)) * amplitude
    for amp in weights:
        direction = rng.standard_normal(3)
        if flat:
            direction[0] = 0.0
        direction /= np.linalg.norm(direction) + 1e-12
        f = rng.uniform(*freq)
        rows.append((*(float(d * f) for d in direction), float(amp), float(rng.uniform(0, 2 * np.pi))))
    return tuple(rows)


def random_walk(rng: np.random.Generator, start: Sequence[float], heading: float, length: float, steps: int, turn: float) -> np.ndarray:
    """A smooth random polyline (x, y) of `steps` segments: heading drifts by N(0, turn) per step."""
    pts = np.empty((steps + 1, 2))
    pts[0] = start
    step = length / steps
    for i in range(1, steps + 1):
        heading += rng.normal(0.0, turn)
        pts[i] = pts[i - 1] + step * np.array([math.cos(heading), math.sin(heading)])
    return pts


def vessel_tree(rng: np.random.Generator, start: Sequence[float], heading: float, length: float, thickness: float, depth: int, **paint) -> list[Curve]:
    """A branching tree of curves from `start` (x, y): each branch spawns 1-2 thinner, shorter ones."""
    pts = random_walk(rng, start, heading, length, 24, 0.12)
    curves = [Curve(points=pts, thickness=max(1, round(thickness)), **paint)]
    if depth > 0:
        for _ in range(int(rng.integers(1, 3))):
            at = pts[int(rng.integers(6, 20))]
            side = heading + rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 0.9)
            curves += vessel_tree(rng, at, side, length * 0.6, thickness * 0.7, depth - 1, **paint)
    return curves


@dataclass
class Scene:
    """What a modality builder returns: the primitives plus how to turn intensities into uint8.

    `finish(values, labels, z0, rng)` receives one float32 slab (d, H, W) of painted intensities,
    the label slab (read-only by convention) and its first slice index, and returns uint8
    (d, H, W) or (d, H, W, 3). `slab` = slices per slab (the whole volume where the finishing
    needs it, e.g. a 3D blur). `spacing` = (x, y, z) for 3D cases.
    """

    background: float
    primitives: list[Primitive]
    finish: Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]
    slab: int = 16
    spacing: tuple[float, float, float] | None = None


def render(scene: Scene, shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Paint `scene` on a (D, H, W) grid; returns (imgs uint8 (D, H, W[, 3]), gts uint16 (D, H, W)).

    Slab noise comes from `np.random.default_rng([seed, 1, z0])`, so output is a pure function of
    (scene, shape, seed) for a fixed slab size.
    """
    depth = shape[0]
    gts = np.zeros(shape, np.uint16)
    placed = [(p, b) for p in scene.primitives if (b := p.bbox(shape)) is not None]
    imgs: np.ndarray | None = None
    for z0 in range(0, depth, scene.slab):
        z1 = min(depth, z0 + scene.slab)
        values = np.full((z1 - z0, *shape[1:]), scene.background, F32)
        labels = gts[z0:z1]
        for prim, (bz0, bz1, y0, y1, x0, x1) in placed:
            lo, hi = max(z0, bz0), min(z1, bz1)
            if lo < hi:
                _paint(prim, values[lo - z0:hi - z0, y0:y1, x0:x1], labels[lo - z0:hi - z0, y0:y1, x0:x1], (lo, hi, y0, y1, x0, x1))
        out = scene.finish(values, labels, z0, np.random.default_rng([seed, 1, z0]))
        if imgs is None:
            imgs = np.empty((depth, *out.shape[1:]), np.uint8)
        imgs[z0:z1] = out
    assert imgs is not None
    return imgs, gts


def _paint(prim: Primitive, values: np.ndarray, labels: np.ndarray, block: BBox) -> None:
    mask, value = prim.evaluate(*block)
    label_mask = mask if prim.within is None else mask & (labels == prim.within)
    if prim.additive:
        np.add(values, value, out=values, where=mask)
    else:
        np.copyto(values, value, where=label_mask)
    if prim.label:
        labels[label_mask] = prim.label


def to_uint8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Window [lo, hi] -> 0..255 with rounding (in place on the float array)."""
    x -= F32(lo)
    x *= F32(255.0 / (hi - lo))
    x += F32(0.5)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def colour_lut(stops: Sequence[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    """256 x 3 uint8 lookup table, linear between (position in [0, 1], RGB) stops."""
    pos = np.array([s[0] for s in stops])
    rgb = np.array([s[1] for s in stops], float)
    t = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(t, pos, rgb[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """(d, H, W) uint8 -> (d, H, W, 3) with identical channels, as the organisers store grey 2D."""
    return np.repeat(grey[..., None], 3, axis=-1)


def radial(shape_hw: tuple[int, int], center: tuple[float, float], scale: float) -> np.ndarray:
    """Distance from `center` (y, x) divided by `scale`, float32 (H, W)."""
    yy = (np.arange(shape_hw[0], dtype=F32) - F32(center[0]))[:, None]
    xx = (np.arange(shape_hw[1], dtype=F32) - F32(center[1]))[None, :]
    return np.sqrt(yy * yy + xx * xx) / F32(scale)
