"""3D phantoms (CT, MR, PET) on a (D, H, W) grid, z = slice.

CT and MR share one abdominal anatomy (body, fat, muscles, spine, bowel gas; labelled organs and
lesions) with modality-specific intensities; PET is a whole-body uptake map with hot lesions.
Layouts are in fractions of the grid, so the same scene scales from a 48-slice demo volume to the
287 x 512 x 512 benchmark volume.
"""
from __future__ import annotations

import math
from typing import cast

import numpy as np
from scipy import ndimage

from .shapes import F32, Blob, Primitive, Scene, SmoothField, to_uint8, wobble

# name: (z-centre range as fraction of D, y and x offset in body radii, radii as fractions of (D, H, W), angle)
ORGANS = {
    "aorta": ((0.40, 0.60), 0.45, 0.08, (0.70, 0.022, 0.022), 0.0),
    "kidney_right": ((0.30, 0.50), 0.40, -0.40, (0.14, 0.065, 0.040), 0.35),
    "kidney_left": ((0.32, 0.52), 0.40, 0.40, (0.14, 0.065, 0.040), -0.35),
    "pancreas": ((0.40, 0.55), 0.08, 0.15, (0.06, 0.030, 0.110), -0.2),
    "spleen": ((0.45, 0.70), 0.20, 0.62, (0.14, 0.090, 0.055), -0.6),
    "stomach": ((0.50, 0.70), -0.35, 0.30, (0.15, 0.080, 0.090), 0.5),
    "liver": ((0.35, 0.65), -0.15, -0.33, (0.32, 0.200, 0.210), 0.3),
}
LESION_HOSTS = ("liver", "kidney_right", "kidney_left", "spleen")

# Tissue intensities: CT in HU, MR as T2-like signal in [0, 1]. Pairs are (edge, centre).
TISSUE = {
    "CT": {
        "background": -1000.0, "fat": -90.0, "soft": 30.0, "muscle": 50.0, "spine": (700.0, 250.0),
        "canal": 20.0, "gas": -800.0, "aorta": 190.0, "kidney_right": (170.0, 120.0),
        "kidney_left": (170.0, 120.0), "pancreas": 85.0, "spleen": 110.0, "stomach": (60.0, 10.0),
        "liver": 75.0, "lesion": (40.0, 15.0), "nodule": 70.0,
    },
    "MR": {
        "background": 0.0, "fat": 0.75, "soft": 0.30, "muscle": 0.20, "spine": (0.40, 0.50),
        "canal": 0.95, "gas": 0.02, "aorta": 0.05, "kidney_right": (0.55, 0.70),
        "kidney_left": (0.55, 0.70), "pancreas": 0.42, "spleen": 0.58, "stomach": (0.45, 0.85),
        "liver": 0.15, "lesion": (0.70, 0.95), "nodule": 0.50,
    },
}


def _pair(v: float | tuple[float, float]) -> tuple[float, float | None]:
    return v if isinstance(v, tuple) else (float(v), None)


def _blob(rng, center, radii, angle, tissue, amp=0.12, flat=False, **paint) -> Blob:
    edge, centre = _pair(tissue)
    return Blob(center=center, radii=radii, angle=angle, value=edge, center_value=centre,
                wobble=wobble(rng, amp, flat=flat), **paint)


def _abdomen(rng: np.random.Generator, shape: tuple[int, int, int], n: int, table: dict) -> list[Primitive]:
    """Unlabelled torso (body, muscles, spine, gas) + n labelled organs and lesions (labels 1..n)."""
    d, h, w = shape
    cy, cx = h * rng.uniform(0.48, 0.55), w * rng.uniform(0.47, 0.53)
    by, bx = h * rng.uniform(0.30, 0.36), w * rng.uniform(0.40, 0.50)
    tall = math.inf  # a prism through the whole volume
    prims: list[Primitive] = [
        _blob(rng, (d / 2, cy, cx), (tall, by, bx), 0.0, table["fat"], amp=0.04),
        _blob(rng, (d / 2, cy, cx), (tall, by * 0.86, bx * 0.88), 0.0, table["soft"], amp=0.05),
    ]
    sy = cy + 0.70 * by
    for side in (-1, 1):  # paraspinal / psoas muscles close to organ intensities
        prims.append(_blob(rng, (d / 2, sy - 0.05 * h, cx + side * 0.10 * w), (tall, 0.05 * h, 0.06 * w), 0.0, table["muscle"], amp=0.05))
    prims.append(_blob(rng, (d / 2, sy, cx), (tall, 0.05 * h, 0.05 * w), 0.0, table["spine"], amp=0.03))
    prims.append(Blob(center=(d / 2, sy, cx), radii=(tall, 0.018 * h, 0.018 * w), value=table["canal"]))
    for _ in range(int(rng.integers(3, 7))):  # bowel gas: dark pockets, never over organs
        gy, gx = cy + rng.uniform(-0.6, 0.3) * by, cx + rng.uniform(-0.5, 0.6) * bx
        r = rng.uniform(0.01, 0.035)
        prims.append(_blob(rng, (rng.uniform(0, d), gy, gx), (r * d * 2, r * h, r * w * 1.3), rng.uniform(0, np.pi), table["gas"], amp=0.2, within=0))
    return prims + _organs_and_lesions(rng, shape, n, table, (cy, cx, by, bx))


def _organs_and_lesions(rng, shape, n, table, body) -> list[Primitive]:
    d, h, w = shape
    cy, cx, by, bx = body
    n_lesions = 0 if n < 2 else min(n - 1, int(rng.integers(1, 3)))
    n_lesions = max(n_lesions, n - len(ORGANS))
    names = [str(k) for k in rng.choice(list(ORGANS), size=n - n_lesions, replace=False)]
    if n_lesions and not set(names) & set(LESION_HOSTS):
        names[-1] = "liver"
    # small organs first: with within=0 a later, larger organ wraps around them instead of hiding them
    names.sort(key=lambda k: float(np.prod(ORGANS[k][3])))
    organs: dict[str, Blob] = {}
    prims: list[Primitive] = []
    for label, name in enumerate(names, start=1):
        (z_lo, z_hi), y_rel, x_rel, (rz, ry, rx), angle = ORGANS[name]
        s = rng.uniform(0.85, 1.15)
        centre = (round(rng.uniform(z_lo, z_hi) * (d - 1)), cy + y_rel * by + rng.normal(0, 0.01) * h, cx + x_rel * bx + rng.normal(0, 0.01) * w)
        radii = (max(1.0, rz * d * s), max(1.5, ry * h * s), max(1.5, rx * w * s))
        organs[name] = _blob(rng, centre, radii, angle + rng.normal(0, 0.1), table[name], amp=0.25, flat=False, label=label, within=0)
        prims.append(organs[name])
    hosts = [k for k in names if k in LESION_HOSTS]
    for i in range(n_lesions):
        label = len(names) + 1 + i
        flat = n >= 3 and i == 0  # a single-slice lesion whenever there is room for one
        host = organs[hosts[int(rng.integers(len(hosts)))]]
        prims.append(_lesion(rng, host, table["lesion"], label, flat, shape))
    return prims


def _lesion(rng, host: Blob, tissue, label: int, flat: bool, shape) -> Blob:
    """A lesion inside `host` (offset < 0.45 host radii), clipped to the host's label."""
    d = shape[0]
    direction = rng.standard_normal(3)
    direction *= rng.uniform(0.0, 0.45) / np.linalg.norm(direction)
    (cz, cy, cx), (hz, hy, hx) = host.center, host.radii
    z = int(np.clip(round(cz + direction[0] * hz), 0, d - 1))
    r_in = max(2.5, min(hy, hx) * rng.uniform(0.08, 0.35))
    rz = 0.5 if flat else max(1.0, r_in * hz / max(hy, hx))
    return _blob(rng, (z, cy + direction[1] * hy, cx + direction[2] * hx), (rz, r_in, r_in * rng.uniform(0.8, 1.2)),
                 rng.uniform(0, np.pi), tissue, amp=0.15, flat=flat, label=label, within=host.label)


def _spacing(rng, shape, fov_xy: float, fov_z: float, z_range: tuple[float, float]) -> tuple[float, float, float]:
    """(x, y, z) spacing in mm, SimpleITK order as the organisers store it."""
    d, h, w = shape
    f = fov_xy * rng.uniform(0.9, 1.1)
    return (round(f / w, 4), round(f / h, 4), round(float(np.clip(fov_z / d, *z_range)), 4))


def ct_scene(rng: np.random.Generator, shape: tuple[int, int, int], n: int) -> Scene:
    """Contrast-enhanced abdominal CT in HU, windowed at level 40 / width 400 as the organisers do."""
    texture = SmoothField(rng, shape, (4, shape[1] / 48, shape[2] / 48))

    def finish(values, labels, z0, noise_rng):
        values += F32(8.0) * texture.block(z0, z0 + len(values))
        values += noise_rng.standard_normal(values.shape, F32) * F32(12.0)
        return to_uint8(values, -160.0, 240.0)

    table = TISSUE["CT"]
    return Scene(cast(float, table["background"]), _abdomen(rng, shape, n, table), finish, slab=16,
                 spacing=_spacing(rng, shape, 400.0, 300.0, (0.8, 5.0)))


def mr_scene(rng: np.random.Generator, shape: tuple[int, int, int], n: int) -> Scene:
    """T2-like abdominal MR: multiplicative bias field and Rician (magnitude) noise."""
    texture = SmoothField(rng, shape, (3, shape[1] / 40, shape[2] / 40))
    bias = SmoothField(rng, shape, (shape[0] / 1.5, shape[1] / 2, shape[2] / 2))
    sigma = F32(0.03)

    def finish(values, labels, z0, noise_rng):
        z1 = z0 + len(values)
        values += F32(0.03) * texture.block(z0, z1)
        values *= 1.0 + F32(0.18) * bias.block(z0, z1)
        real = values + sigma * noise_rng.standard_normal(values.shape, F32)
        imag = sigma * noise_rng.standard_normal(values.shape, F32)
        return to_uint8(np.sqrt(real * real + imag * imag), 0.0, 1.05)

    table = TISSUE["MR"]
    return Scene(cast(float, table["background"]), _abdomen(rng, shape, n, table), finish, slab=16,
                 spacing=_spacing(rng, shape, 380.0, 256.0, (1.0, 8.0)))


def pet_scene(rng: np.random.Generator, shape: tuple[int, int, int], n: int) -> Scene:
    """Whole-body FDG PET in SUV: low background, physiological uptake (brain, heart, liver,
    kidneys, bladder, unlabelled) and n labelled hot lesions of very different sizes; Poisson-like
    noise and a 3D Gaussian point-spread blur (the whole volume is finished at once)."""
    d, h, w = shape
    cy, cx = h * rng.uniform(0.48, 0.52), w * rng.uniform(0.48, 0.52)
    by, bx = h * rng.uniform(0.28, 0.34), w * rng.uniform(0.38, 0.46)
    zb = d * rng.uniform(0.80, 0.86)  # torso top; head above
    prims: list[Primitive] = [
        _blob(rng, (zb / 2, cy, cx), (zb / 2, by, bx), 0.0, (0.35, 0.8), amp=0.03),
        _blob(rng, (zb + 0.08 * d, cy, cx), (0.09 * d, 0.40 * by, 0.30 * bx), 0.0, 1.0, amp=0.03),
        _blob(rng, (zb + 0.09 * d, cy, cx), (0.06 * d, 0.30 * by, 0.22 * bx), 0.0, (6.0, 8.0), amp=0.05),
    ]
    for side in (-1, 1):
        prims.append(_blob(rng, (0.68 * d, cy - 0.1 * by, cx + side * 0.45 * bx), (0.14 * d, 0.6 * by, 0.35 * bx), 0.0, 0.3, amp=0.08))
        prims.append(_blob(rng, (0.45 * d, cy + 0.45 * by, cx + side * 0.38 * bx), (0.05 * d, 0.18 * by, 0.10 * bx), 0.3 * side, (2.5, 3.5), amp=0.1))
    prims.append(_blob(rng, (0.66 * d, cy + 0.05 * by, cx + 0.15 * bx), (0.05 * d, 0.28 * by, 0.2 * bx), 0.0, (2.5, 4.5), amp=0.1))
    prims.append(_blob(rng, (0.55 * d, cy - 0.05 * by, cx - 0.4 * bx), (0.09 * d, 0.55 * by, 0.35 * bx), 0.3, 2.2, amp=0.1))
    prims.append(_blob(rng, (0.08 * d, cy, cx), (0.03 * d, 0.2 * by, 0.18 * bx), 0.0, (10.0, 14.0), amp=0.05))
    spacing = _spacing(rng, shape, 700.0, 790.0, (1.5, 6.0))
    for label in range(1, n + 1):
        flat = n >= 3 and label == n
        r = max(2.0, math.exp(rng.uniform(math.log(10.0), math.log(50.0))) / spacing[0])  # radius 10-50 mm, log-uniform
        z = round(rng.uniform(0.2, 0.8) * (d - 1))
        ang = rng.uniform(0, 2 * np.pi)
        rad = math.sqrt(rng.uniform(0, 0.55))
        centre = (z, cy + rad * by * math.sin(ang), cx + rad * bx * math.cos(ang))
        peak = rng.uniform(4.0, 15.0)
        prims.append(Blob(center=centre, radii=(0.5 if flat else max(1.0, r * 0.8), r, r * rng.uniform(0.8, 1.2)),
                          angle=rng.uniform(0, np.pi), value=peak * 0.55, center_value=peak,
                          wobble=wobble(rng, 0.15, flat=flat), label=label, within=0))

    def finish(values, labels, z0, noise_rng):
        values += np.sqrt(np.maximum(values, 0)) * F32(0.35) * noise_rng.standard_normal(values.shape, F32)
        values = ndimage.gaussian_filter(values, sigma=0.9, mode="nearest")
        return to_uint8(values, 0.0, 7.0)

    return Scene(0.0, prims, finish, slab=d, spacing=spacing)
