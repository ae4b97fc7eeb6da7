"""2D phantoms on a (1, H, W) grid; every finish returns RGB uint8 (1, H, W, 3).

Intensities are a scalar in [0, 1] per modality (echogenicity, reflectance, attenuation, stain
density); colour modalities map it through a lookup table, grey ones repeat it on 3 channels as
the organisers store grey images.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .shapes import (F32, Band, Blob, Curve, Primitive, Scene, SmoothField, colour_lut, grey_to_rgb,
                     radial, random_walk, to_uint8, vessel_tree, wobble)

Shape = tuple[int, int, int]


def _blob(rng, cy, cx, ry, rx, value, center_value=None, amp=0.1, freq=(1.0, 3.0), angle=None, **paint) -> Blob:
    """A 2D blob on slice 0; random angle unless given."""
    return Blob(center=(0.0, cy, cx), radii=(1.0, ry, rx), value=value, center_value=center_value,
                angle=rng.uniform(0, np.pi) if angle is None else angle, wobble=wobble(rng, amp, freq=freq), **paint)


def _log_uniform(rng, lo: float, hi: float) -> float:
    """Sizes spread over an order of magnitude: small and large objects in one image."""
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _place(rng, sample, r: float, placed: list, fits=lambda cy, cx, r: True) -> tuple[float, float, float]:
    """Draw a centre with `sample()` until the circle (cy, cx, r) `fits` and keeps clear of the
    circles already `placed` (so a later object never hides an earlier one); r shrinks 3 % per
    failed try. Appends the circle to `placed` and returns it."""
    for _ in range(100):
        cy, cx = sample()
        if fits(cy, cx, r) and all(math.hypot(cy - py, cx - px) > 0.9 * (r + pr) for py, px, pr in placed):
            break
        r *= 0.97
    placed.append((cy, cx, r))
    return cy, cx, r


def _field(rng, shape: Shape, cells: float) -> np.ndarray:
    """One (H, W) smooth noise image with about `cells` features across the larger side."""
    c = max(shape[1:]) / cells
    return SmoothField(rng, shape, (1, c, c)).block(0, 1)[0]


def _speckle(rng, hw: tuple[int, int], sigma_yx: tuple[float, float]) -> np.ndarray:
    """Fully developed speckle: |low-passed complex Gaussian|, unit mean square (Rayleigh)."""
    re, im = (cv2.GaussianBlur(rng.standard_normal(hw, F32), (0, 0), sigma_yx[1], sigmaY=sigma_yx[0]) for _ in range(2))
    mag = np.sqrt(re * re + im * im)
    return mag / np.sqrt(np.mean(mag * mag))


def _lut_finish(lut: np.ndarray, lo: float = 0.0, hi: float = 1.0):
    def out(values: np.ndarray) -> np.ndarray:
        return lut[to_uint8(values, lo, hi)]
    return out


def us_scene(rng: np.random.Generator, shape: Shape, n: int) -> Scene:
    """B-mode ultrasound: layered tissue, hypo/anechoic and hyperechoic lesions, multiplicative
    speckle, depth attenuation, log compression; a convex-probe fan (black outside) half the time."""
    _, h, w = shape
    x = np.arange(w, dtype=F32)
    prims: list[Primitive] = []
    top: np.ndarray = np.zeros(w, F32)
    for depth, value in ((0.04, 0.9), (rng.uniform(0.12, 0.22), 0.3), (rng.uniform(0.28, 0.36), 0.6)):
        bottom = h * (depth + 0.02 * np.sin(x / w * rng.uniform(2, 6) + rng.uniform(0, 6)))
        prims.append(Band(top=top, bottom=bottom, value=value))
        top = bottom
    fan = rng.random() < 0.5
    apex, half_angle, r_max = (-0.15 * h, w / 2), rng.uniform(0.45, 0.65), 1.18 * h

    def in_fan(cy, cx, r):
        dist, ang = math.hypot(cy - apex[0], cx - apex[1]), math.atan2(cx - apex[1], cy - apex[0])
        return not fan or (dist + 1.3 * r < r_max and abs(ang) + 1.3 * r / dist < half_angle)

    placed: list = []
    for label in range(1, n + 1):
        kind = rng.choice(["cyst", "hypo", "hyper"], p=[0.35, 0.45, 0.2])
        cy, cx, r = _place(rng, lambda: (rng.uniform(0.3, 0.9) * h, rng.uniform(0.05, 0.95) * w),
                           _log_uniform(rng, 0.03, 0.2) * min(h, w), placed, in_fan)
        value, centre, amp = {"cyst": (0.04, None, 0.05), "hypo": (0.22, 0.12, 0.22), "hyper": (0.85, 0.95, 0.15)}[str(kind)]
        prims.append(_blob(rng, cy, cx, r, r * rng.uniform(0.6, 1.0), value, centre, amp=amp, label=label, within=0))
    texture = _field(rng, shape, 12)
    yy = np.arange(h, dtype=F32)[:, None]
    gain = 1.0 - 0.35 * yy / h
    dist = np.sqrt((yy - F32(apex[0])) ** 2 + (x[None, :] - F32(apex[1])) ** 2)
    inside = (dist < r_max) & (np.abs(np.arctan2(x[None, :] - F32(apex[1]), yy - F32(apex[0]))) < half_angle) if fan else np.ones((h, w), bool)

    def finish(values, labels, z0, noise_rng):
        img = (values[0] + F32(0.06) * texture) * _speckle(noise_rng, (h, w), (0.8, 1.6)) * gain
        img = np.log1p(F32(8.0) * np.maximum(img, 0)) / F32(math.log1p(8.0)) * inside
        return grey_to_rgb(to_uint8(img, 0.0, 1.0)[None])

    return Scene(0.45, prims, finish, slab=1)


def endoscopy_scene(rng: np.random.Generator, shape: Shape, n: int) -> Scene:
    """Colonoscopy frame: pink mucosa with folds and a dark lumen, polyps lit from above,
    specular highlights, vignetting and a round field of view (black corners)."""
    _, h, w = shape
    half_diag = 0.5 * math.hypot(h, w)
    fov = rng.uniform(0.8, 0.95)
    prims: list[Primitive] = []
    for _ in range(int(rng.integers(2, 5))):  # folds
        prims.append(_blob(rng, rng.uniform(0, h), rng.uniform(0, w), 0.05 * h, rng.uniform(0.3, 0.6) * w, rng.choice([0.42, 0.6]), amp=0.2))
    prims.append(_blob(rng, rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, 0.12 * h, 0.15 * w, 0.2, 0.03, amp=0.2))
    placed: list = []
    for label in range(1, n + 1):
        cy, cx, r = _place(rng, lambda: (rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w), _log_uniform(rng, 0.05, 0.28) * min(h, w),
                           placed, lambda cy, cx, r: math.hypot(cy - h / 2, cx - w / 2) + 1.3 * r < fov * half_diag)
        prims.append(_blob(rng, cy, cx, r, r * rng.uniform(0.7, 1.0), 0.6, 0.72, amp=0.12, shade=(0.0, -0.12, 0.0), angle=0.0, label=label, within=0))
    for _ in range(int(rng.integers(4, 20))):  # specular highlights, also on polyps
        prims.append(_blob(rng, rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1.0, 0.006 * h + 1.5), rng.uniform(1.5, 0.012 * w + 2), 1.0, amp=0.2))
    coarse, fine = _field(rng, shape, 6), _field(rng, shape, 40)
    radius = radial((h, w), (h / 2, w / 2), half_diag)
    shading = (1.0 - 0.45 * radius * radius) * (radius < fov)
    lut = _lut_finish(colour_lut([(0, (0, 0, 0)), (0.15, (60, 10, 10)), (0.4, (150, 40, 35)), (0.6, (205, 95, 80)),
                                  (0.8, (235, 160, 140)), (0.95, (250, 225, 215)), (1, (255, 255, 255))]))

    def finish(values, labels, z0, noise_rng):
        v = values[0]
        v += F32(0.05) * coarse + F32(0.02) * fine + F32(0.012) * noise_rng.standard_normal(v.shape, F32)
        np.minimum(v, 1.0, out=v)
        return lut(v * shading)[None]

    return Scene(0.5, prims, finish, slab=1)


def fundus_scene(rng: np.random.Generator, shape: Shape, n: int) -> Scene:
    """Colour fundus photograph: round field of view, optic disc (label 1) with its cup inside
    (label 2, overwriting the disc), dark macula, a vessel tree crossing the disc, and bright
    exudates or dark haemorrhages as further labels."""
    _, h, w = shape
    cy, cx, big_r = h / 2, w / 2, 0.47 * min(h, w)
    side = rng.choice([-1.0, 1.0])
    dy, dx = cy + rng.normal(0, 0.05) * big_r, cx + side * rng.uniform(0.35, 0.5) * big_r
    rd = big_r * rng.uniform(0.11, 0.16)
    prims: list[Primitive] = [_blob(rng, cy, cx - side * 0.1 * big_r, 0.12 * big_r, 0.12 * big_r, 0.3, 0.22, amp=0.05)]
    labels = iter(range(1, n + 1))
    disc = next(labels, 0)
    prims.append(_blob(rng, dy, dx, rd, rd * rng.uniform(0.85, 1.0), 0.78, 0.88, amp=0.06, label=disc, within=0))
    if disc and n >= 2:
        rc = rd * rng.uniform(0.35, 0.6)
        prims.append(_blob(rng, dy, dx, rc, rc, 0.92, 0.97, amp=0.08, label=next(labels), within=disc))
    placed = [(dy, dx, 1.2 * rd)]

    def in_fov():
        ang, rad = rng.uniform(0, 2 * np.pi), math.sqrt(rng.uniform(0.05, 0.7)) * big_r
        return cy + rad * math.sin(ang), cx + rad * math.cos(ang)

    for label in labels:
        exudate = rng.random() < 0.5
        ly, lx, r = _place(rng, in_fov, _log_uniform(rng, 0.012, 0.06) * big_r, placed)
        prims.append(_blob(rng, ly, lx, r, r * rng.uniform(0.6, 1.0), 0.85 if exudate else 0.2, 0.9 if exudate else 0.12,
                           amp=0.2, label=label, within=0))
    temporal = math.pi if side > 0 else 0.0  # from the disc towards the macula
    for base, turn, reach in ((temporal, 0.8, 1.0), (temporal, -0.8, 1.0), (temporal + math.pi, 0.5, 0.6), (temporal + math.pi, -0.5, 0.6)):
        prims += vessel_tree(rng, (dx, dy), base + turn * rng.uniform(0.7, 1.3), reach * big_r * rng.uniform(0.8, 1.1),
                             big_r * 0.025, 3, value=0.25)
    texture = _field(rng, shape, 10)
    radius = radial((h, w), (cy, cx), big_r)
    shading = (1.0 - 0.35 * radius * radius) * (radius < 1.0)
    lut = _lut_finish(colour_lut([(0, (0, 0, 0)), (0.2, (90, 20, 10)), (0.45, (190, 80, 30)), (0.7, (235, 150, 60)),
                                  (0.9, (250, 220, 120)), (1, (255, 250, 200))]))

    def finish(values, labels, z0, noise_rng):
        v = values[0]
        v += F32(0.04) * texture + F32(0.015) * noise_rng.standard_normal(v.shape, F32)
        return lut(v * shading)[None]

    return Scene(0.45, prims, finish, slab=1)


def dermoscopy_scene(rng: np.random.Generator, shape: Shape, n: int) -> Scene:
    """Dermoscopy: skin texture, one large irregular pigmented lesion (darker centre, globules)
    plus smaller ones, hairs crossing everything, dark circular vignette."""
    _, h, w = shape
    m = min(h, w)
    prims: list[Primitive] = []
    placed: list = []
    for label in range(1, n + 1):
        if label == 1:  # the main lesion, near the centre
            cy, cx, r = _place(rng, lambda: (h / 2 + rng.uniform(-0.15, 0.15) * h, w / 2 + rng.uniform(-0.15, 0.15) * w),
                               rng.uniform(0.18, 0.42) * m, placed)
        else:
            cy, cx, r = _place(rng, lambda: (rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w), _log_uniform(rng, 0.03, 0.12) * m, placed)
        ry, rx = r, r * rng.uniform(0.65, 1.0)
        prims.append(Blob(center=(0.0, cy, cx), radii=(1.0, ry, rx), angle=rng.uniform(0, np.pi), value=0.52, center_value=0.2,
                          wobble=wobble(rng, 0.18, freq=(1, 3)) + wobble(rng, 0.07, freq=(5, 9)), label=label, within=0))
        for _ in range(int(rng.integers(3, 25))):  # globules, only inside their lesion
            gr = rng.uniform(0.01, 0.05) * r + 1.0
            a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.7)
            prims.append(_blob(rng, cy + d * ry * math.sin(a), cx + d * rx * math.cos(a), gr, gr, 0.1, amp=0.1, within=label))
    for _ in range(int(rng.integers(0, 12))):  # hairs
        start = (rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h)
        prims.append(Curve(points=random_walk(rng, start, rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.9) * m, 30, 0.05),
                           thickness=max(1, round(m / rng.uniform(250, 500))), value=0.08))
    coarse, fine = _field(rng, shape, 5), _field(rng, shape, 120)
    radius = radial((h, w), (h / 2, w / 2), 0.5 * math.hypot(h, w) * rng.uniform(0.8, 1.1))
    vignette = np.clip(1.4 - radius, 0.0, 1.0) ** 0.7
    lut = _lut_finish(colour_lut([(0, (35, 20, 15)), (0.25, (85, 50, 35)), (0.45, (140, 90, 65)), (0.65, (190, 135, 110)),
                                  (0.82, (225, 175, 155)), (1, (245, 215, 200))]))

    def finish(values, labels, z0, noise_rng):
        v = values[0]
        v += F32(0.04) * coarse + F32(0.025) * fine + F32(0.015) * noise_rng.standard_normal(v.shape, F32)
        v *= vignette
        return lut(v)[None]

    return Scene(0.8, prims, finish, slab=1)


def microscope_scene(rng: np.random.Generator, shape: Shape, n: int) -> Scene:
    """Cell microscopy: n touching cells in clusters (labels 1..n), each with a nucleus;
    brightfield stain colours or fluorescence (dark background) at random."""
    _, h, w = shape
    fill = rng.uniform(0.35, 0.55)
    r0 = math.sqrt(fill * h * w / (n * math.pi))
    centres = _hex_points(rng, h, w, 1.75 * r0)
    while len(centres) < n:
        r0 *= 0.9
        centres = _hex_points(rng, h, w, 1.75 * r0)
    seeds = rng.uniform((0, 0), (h, w), size=(int(rng.integers(1, 5)), 2))
    near = np.min(np.linalg.norm(centres[:, None, :] - seeds[None], axis=2), axis=1) + rng.uniform(0, 2 * r0, len(centres))
    centres = centres[np.argsort(near, kind="stable")[:n]]
    fluorescent = rng.random() < 0.4
    cell, nucleus, background = ((0.45, 0.6), (0.85, 0.95), 0.05) if fluorescent else ((0.5, 0.66), (0.25, 0.15), 0.93)
    prims: list[Primitive] = []
    for label, (cy, cx) in enumerate(centres, start=1):
        ry = r0 * rng.uniform(0.8, 1.1)
        rx, ang, shift = ry * rng.uniform(0.65, 1.0), rng.uniform(0, np.pi), rng.normal(0, 0.05)
        prims.append(Blob(center=(0.0, cy, cx), radii=(1.0, ry, rx), angle=ang, value=cell[0] + shift, center_value=cell[1] + shift,
                          wobble=wobble(rng, 0.1, freq=(2, 4)), label=label, within=0))
        prims.append(Blob(center=(0.0, cy, cx), radii=(1.0, 0.45 * ry, 0.45 * rx), angle=ang, value=nucleus[0], center_value=nucleus[1], within=label))
    texture = _field(rng, shape, max(h, w) / max(4.0, r0))
    stops = ([(0, (0, 0, 0)), (0.5, (20, 120, 40)), (0.8, (80, 220, 120)), (1, (220, 255, 230))] if fluorescent else
             [(0, (60, 20, 90)), (0.25, (110, 50, 140)), (0.55, (215, 130, 180)), (0.75, (235, 185, 215)), (1, (248, 244, 248))])
    lut = _lut_finish(colour_lut(stops))

    def finish(values, labels, z0, noise_rng):
        v = values[0]
        v += F32(0.04) * texture + F32(0.02) * noise_rng.standard_normal(v.shape, F32)
        return lut(v)[None]

    return Scene(background, prims, finish, slab=1)


def _hex_points(rng, h: int, w: int, step: float) -> np.ndarray:
    """Jittered hexagonal grid of (y, x) points over the image (cells may cross its borders)."""
    ys = np.arange(rng.uniform(0, step), h, step * math.sqrt(3) / 2)
    pts = [(y, x) for j, y in enumerate(ys) for x in np.arange((j % 2) * step / 2 + rng.uniform(0, step / 2), w, step)]
    return np.asarray(pts, float).reshape(-1, 2) + rng.uniform(-0.08, 0.08, (len(pts), 2)) * step


def mammography_scene(rng: np.random.Generator, shape: Shape, n: int) -> Scene:
    """MLO mammogram: breast against the chest-wall border, pectoral muscle in the corner,
    fibroglandular texture, vessels and calcifications (unlabelled), spiculated masses (labels)."""
    _, h, w = shape
    side = 0.0 if rng.random() < 0.5 else w - 1.0
    cy, ry, rx = h * rng.uniform(0.45, 0.55), h * rng.uniform(0.42, 0.5), w * rng.uniform(0.75, 0.92)
    prims: list[Primitive] = [
        Blob(center=(0.0, cy, side), radii=(1.0, ry, rx), value=0.3, center_value=0.5, wobble=wobble(rng, 0.03)),
        _blob(rng, 0.0, side, h * rng.uniform(0.3, 0.4), w * rng.uniform(0.18, 0.26), 0.62, 0.7, amp=0.03, angle=0.0),
    ]
    sign = 1.0 if side == 0.0 else -1.0
    for _ in range(int(rng.integers(2, 6))):
        start = (side + sign * rng.uniform(0.05, 0.3) * rx, cy + rng.uniform(-0.6, 0.6) * ry)
        prims.append(Curve(points=random_walk(rng, start, 0.0 if sign > 0 else np.pi, rng.uniform(0.3, 0.7) * rx, 30, 0.15),
                           thickness=max(1, round(h / 800)), value=0.62, within=0))

    def in_breast():
        rad, ang = math.sqrt(rng.uniform(0.05, 0.6)), rng.uniform(-np.pi / 2, np.pi / 2)
        return cy + rad * ry * math.sin(ang), side + sign * rad * rx * math.cos(ang)

    placed: list = []
    for label in range(1, n + 1):
        my, mx, r = _place(rng, in_breast, _log_uniform(rng, 0.012, 0.07) * h, placed)
        prims.append(Blob(center=(0.0, my, mx), radii=(1.0, r, r * rng.uniform(0.7, 1.0)), angle=rng.uniform(0, np.pi), value=0.55,
                          center_value=0.75, wobble=wobble(rng, 0.12) + wobble(rng, 0.12, terms=4, freq=(6, 12)), label=label, within=0))
    for _ in range(int(rng.integers(3, 25))):  # calcifications
        rad, ang = math.sqrt(rng.uniform(0.0, 0.8)), rng.uniform(-np.pi / 2, np.pi / 2)
        c = rng.uniform(0.6, 1.2) * max(1.0, h / 1000)
        prims.append(_blob(rng, cy + rad * ry * math.sin(ang), side + sign * rad * rx * math.cos(ang), c, c, 0.95, within=0))
    coarse, fine = _field(rng, shape, 12), _field(rng, shape, 90)

    def finish(values, labels, z0, noise_rng):
        v = values[0]
        tissue = v > 0.01
        v += (F32(0.07) * coarse + F32(0.03) * fine + F32(0.01) * noise_rng.standard_normal(v.shape, F32)) * tissue
        return grey_to_rgb(to_uint8(v, 0.0, 1.0)[None])

    return Scene(0.0, prims, finish, slab=1)


# OCT retinal layers (RNFL .. RPE): thickness fraction and reflectivity
OCT_LAYERS = ((0.12, 0.75), (0.10, 0.40), (0.10, 0.58), (0.10, 0.25), (0.08, 0.55), (0.20, 0.18), (0.06, 0.80), (0.06, 0.95))


def oct_scene(rng: np.random.Generator, shape: Shape, n: int) -> Scene:
    """Retinal OCT B-scan: wavy layers spanning the full width (labelled layers touch the left and
    right borders), foveal pit, choroid, dark intraretinal fluid cysts, speckle."""
    _, h, w = shape
    x = np.arange(w, dtype=np.float64)
    n_cysts = 0 if n < 2 else int(rng.integers(0, min(n - 1, 3) + 1))
    n_cysts = max(n_cysts, n - len(OCT_LAYERS))
    chosen = sorted(rng.choice(len(OCT_LAYERS), size=n - n_cysts, replace=False))
    layer_label = {int(k): i + 1 for i, k in enumerate(chosen)}
    total = h * rng.uniform(0.25, 0.35)
    floor = h * rng.uniform(0.55, 0.65) + 0.12 * h * ((x - w / 2) / w) ** 2 + 0.02 * h * np.sin(x / w * rng.uniform(1, 4) + rng.uniform(0, 6))
    pit = 1.0 - 0.8 * np.exp(-0.5 * ((x - w * rng.uniform(0.4, 0.6)) / (0.06 * w)) ** 2)
    bounds = [floor]  # built upwards from the RPE: the inner layers thin out at the foveal pit
    for k in range(len(OCT_LAYERS) - 1, -1, -1):
        bounds.insert(0, bounds[0] - total * OCT_LAYERS[k][0] * (pit if k < 5 else 1.0))
    prims: list[Primitive] = [Band(top=bounds[-1], bottom=bounds[-1] + 0.12 * h, value=0.45, bottom_value=0.2)]
    for k, (_, value) in enumerate(OCT_LAYERS):
        prims.append(Band(top=bounds[k], bottom=bounds[k + 1], value=value, label=layer_label.get(k, 0)))
    for i in range(n_cysts):
        k = int(rng.choice([3, 5]))  # inner nuclear or outer nuclear layer
        cx = int(rng.uniform(0.1, 0.9) * w)
        thick = bounds[k + 1][cx] - bounds[k][cx]
        r = max(2.0, 0.5 * thick * rng.uniform(0.5, 1.0))
        cy = 0.5 * (bounds[k][cx] + bounds[k + 1][cx])
        prims.append(_blob(rng, cy, cx, r, r * rng.uniform(1.0, 2.0), 0.04, amp=0.1, angle=0.0,
                           label=len(chosen) + 1 + i, within=layer_label.get(k, 0)))

    def finish(values, labels, z0, noise_rng):
        img = values[0] * _speckle(noise_rng, (h, w), (0.7, 1.2))
        img = np.log1p(F32(6.0) * img) / F32(math.log1p(6.0))
        return grey_to_rgb(to_uint8(img, 0.0, 1.0)[None])

    return Scene(0.05, prims, finish, slab=1)


def xray_scene(rng: np.random.Generator, shape: Shape, n: int) -> Scene:
    """Panoramic dental X-ray: attenuation adds up, so teeth (labels), jaw bones, spine shadows and
    the airway overlap; touching teeth share borders. Beyond 32 teeth, labelled fillings sit in
    crowns."""
    _, h, w = shape
    n_teeth = min(n, 32)
    cy, cx, half = h * rng.uniform(0.45, 0.55), w / 2, w * rng.uniform(0.36, 0.42)
    bend = h * rng.uniform(0.08, 0.16)

    def occlusal(xs):
        return cy - bend * (1 - ((xs - cx) / half) ** 2)

    prims: list[Primitive] = [_blob(rng, cy, cx, 0.55 * h, 0.48 * w, 0.12, amp=0.03, angle=0.0, additive=True)]
    arch = np.linspace(cx - 1.1 * half, cx + 1.1 * half, 40)
    length = h * rng.uniform(0.13, 0.19)
    for sign in (-1, 1):
        pts = np.stack([arch, occlusal(arch) + sign * 1.3 * length], axis=1)
        prims.append(Curve(points=pts, thickness=round(0.9 * length), value=0.15, additive=True))
    for xs in (0.06 * w, 0.94 * w):  # spine / ramus shadows crossing the end teeth
        prims.append(_blob(rng, h / 2, xs, 0.7 * h, 0.05 * w, 0.12, amp=0.05, angle=0.0, additive=True))
    airway = np.stack([arch, occlusal(arch) - 1.9 * length], axis=1)
    prims.append(Curve(points=airway, thickness=max(2, round(0.08 * h)), value=-0.08, additive=True))
    rows = (n_teeth + 1) // 2, n_teeth // 2
    slot = 2 * half / 16  # 16 teeth per jaw; fewer teeth fill a run of consecutive slots
    teeth: list[Blob] = []
    for sign, count in zip((-1, 1), rows):
        first = int(rng.integers(0, 16 - count + 1))
        for i in range(first, first + count):
            tx = cx - half + (i + 0.5) * slot + rng.normal(0, 0.05) * slot
            slope = math.atan(2 * bend * (tx - cx) / half ** 2)
            molar = abs(tx - cx) / half
            rx = 0.5 * slot * rng.uniform(0.9, 1.05) * (0.9 + 0.4 * molar)
            ry = length * rng.uniform(0.9, 1.1) * (1.0 - 0.2 * molar)
            gap = rng.uniform(0.02, 0.06) * length
            ty = occlusal(tx) + sign * (ry + gap) * math.cos(slope)
            tooth = Blob(center=(0.0, ty, tx - sign * (ry + gap) * math.sin(slope)), radii=(1.0, ry, rx), angle=slope,
                         value=0.3, shade=(0.0, -sign * 0.15, 0.0), wobble=wobble(rng, 0.06),
                         label=len(teeth) + 1, within=0, additive=True)
            teeth.append(tooth)
    prims += teeth
    for label in range(n_teeth + 1, n + 1):
        host = teeth[int(rng.integers(len(teeth)))]
        (_, ty, tx), (_, ry, rx) = host.center, host.radii
        up = 1.0 if host.shade[1] > 0 else -1.0  # towards the crown
        fr = 0.35 * rx
        prims.append(_blob(rng, ty + up * 0.45 * ry * math.cos(host.angle), tx - up * 0.45 * ry * math.sin(host.angle), fr, fr * 1.3,
                           0.5, amp=0.05, angle=host.angle, label=label, within=host.label, additive=True))
    texture = _field(rng, shape, 80)

    def finish(values, labels, z0, noise_rng):
        v = values[0]
        v += F32(0.025) * texture + F32(0.012) * noise_rng.standard_normal(v.shape, F32)
        v = cv2.GaussianBlur(v, (0, 0), 0.8)
        return grey_to_rgb(to_uint8(v, 0.0, 1.0)[None])

    return Scene(0.05, prims, finish, slab=1)
