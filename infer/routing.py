"""The routing table: (dimension, modality) -> model folder and strategy, as data.

The default table ships as ``infer/routing.json``; ``--routing FILE`` replaces it. Format::

    {"format_version": 1,
     "models": {"<folder>": "<arch>", ...},        # every folder a route names; the arch is only
                                                   # used to tell how to export a missing folder
     "propagation_margin": 3,                      # 3D prompt margin, in model-input pixels
     "routes": [{"dimension": "3D", "modality": "PET", "model": "<folder>",
                 "strategy": "three_view_vote"}, ...]}

``modality`` is a test-set spelling (aliases accepted) or ``"*"``, the default of its dimension,
which every dimension must have. ``strategy`` is a name in :data:`infer.strategies.STRATEGIES`
registered for the route's dimension.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from challenge.names import DIMENSIONS, MODALITIES, Dimension, canonical_modality
from infer.errors import RoutingError
from infer.strategies import strategies_for

__all__ = ["DEFAULT_ROUTING", "Route", "RoutingTable", "load_routing"]

DEFAULT_ROUTING = Path(__file__).with_name("routing.json")
FORMAT_VERSION = 1
MAX_MARGIN = 64
"""Largest 3D prompt margin, in model-input pixels: a quarter of a 256-pixel input."""


@dataclass(frozen=True)
class Route:
    """One row of the table; ``modality`` is canonical or ``"*"``."""

    dimension: Dimension
    modality: str
    model: str
    strategy: str

    def describe(self) -> str:
        return f"{self.dimension}/{self.modality} -> {self.model} ({self.strategy})"


@dataclass(frozen=True)
class RoutingTable:
    """A loaded, validated routing table."""

    path: Path
    routes: tuple[Route, ...]
    models: dict[str, str]
    propagation_margin: float

    def route_for(self, dimension: Dimension, modality: str | None) -> Route:
        """The exact (dimension, modality) route, else the dimension's ``"*"`` route."""
        by_key = {(r.dimension, r.modality): r for r in self.routes}
        return by_key.get((dimension, modality or "*")) or by_key[(dimension, "*")]

    def export_hint(self, folder: Path) -> str:
        """How to produce a missing model folder, for the error message."""
        arch = self.models.get(folder.name, "ARCH")
        return f"export it with `python -m train.export --arch {arch} --checkpoint WEIGHTS --out {folder}`"


def _field(where: str, data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise RoutingError(f"{where}: missing field '{key}'")
    if not isinstance(data[key], kind) or isinstance(data[key], bool):
        raise RoutingError(f"{where}: field '{key}' must be {getattr(kind, '__name__', 'a number')}, "
                           f"got {data[key]!r}")
    return data[key]


def _route(path: Path, index: int, row: Any, models: dict[str, str]) -> Route:
    where = f"{path}: routes[{index}]"
    if not isinstance(row, dict):
        raise RoutingError(f"{where}: must be an object, got {row!r}")
    dimension = _field(where, row, "dimension", str)
    if dimension not in DIMENSIONS:
        raise RoutingError(f"{where}: dimension {dimension!r} is not one of {list(DIMENSIONS)}")
    modality = _field(where, row, "modality", str)
    if modality != "*":
        canonical = canonical_modality(modality)
        if canonical is None:
            raise RoutingError(f"{where}: unknown modality {modality!r}; expected '*' or one of "
                               f"{', '.join(MODALITIES)}")
        modality = canonical
    model = _field(where, row, "model", str)
    if model not in models:
        raise RoutingError(f"{where}: model {model!r} is not listed in 'models' ({', '.join(models)})")
    strategy = _field(where, row, "strategy", str)
    if strategy not in strategies_for(dimension):
        raise RoutingError(f"{where}: strategy {strategy!r} is not valid for {dimension}; expected one of "
                           f"{strategies_for(dimension)}")
    return Route(dimension, modality, model, strategy)


def load_routing(path: str | Path = DEFAULT_ROUTING) -> RoutingTable:
    """Read and validate a routing table file.

    Raises:
        RoutingError: unreadable file, invalid JSON, a malformed route, a duplicate
            (dimension, modality), or a dimension without a ``"*"`` route.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise RoutingError(f"{path}: cannot read routing table ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise RoutingError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RoutingError(f"{path}: must hold a JSON object")
    version = _field(str(path), data, "format_version", int)
    if version != FORMAT_VERSION:
        raise RoutingError(f"{path}: format_version {version} is not supported (expected {FORMAT_VERSION})")
    models = _field(str(path), data, "models", dict)
    if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in models.items()):
        raise RoutingError(f"{path}: 'models' must map folder names to architecture names")
    margin = _field(str(path), data, "propagation_margin", (int, float))
    if not 0 <= margin <= MAX_MARGIN:  # NaN fails the comparison too
        raise RoutingError(f"{path}: propagation_margin must be a number from 0 to {MAX_MARGIN} "
                           f"(model-input pixels), got {margin}")
    rows = _field(str(path), data, "routes", list)
    routes = tuple(_route(path, i, row, models) for i, row in enumerate(rows))
    seen: set[tuple[str, str]] = set()
    for route in routes:
        key = (route.dimension, route.modality)
        if key in seen:
            raise RoutingError(f"{path}: two routes for {route.dimension}/{route.modality}")
        seen.add(key)
    for dimension in DIMENSIONS:
        if (dimension, "*") not in seen:
            raise RoutingError(f"{path}: no default route for {dimension} (add one with modality '*')")
    return RoutingTable(path, routes, dict(models), float(margin))
