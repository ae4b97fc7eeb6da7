"""The case-level Python API: routed box-prompted segmentation of arrays or of a folder of cases.

Shape of SAM's ``SamPredictor`` / nnU-Net's ``nnUNetPredictor``, one level up: a
:class:`Segmenter` holds the routing table and the model pool (each model compiled once, on first
use) and answers cases. :meth:`Segmenter.segment` takes in-memory arrays; :meth:`Segmenter.run_folder`
is what ``python -m infer`` runs on a folder of challenge ``.npz`` files, the 2024 box format and
the CVPR 2025 interactive one alike (:mod:`infer.interactive`).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from challenge.folders import case_files
from challenge.names import CaseName, Dimension, canonical_modality, parse_case_name
from infer.cases import MAX_ARRAY_BYTES, check_case, is_interactive
from infer.interactive import InteractiveOptions
from infer.models import ModelPool
from infer.pipeline import CaseResult, run_case, segment_case
from infer.predictor import SlicePredictor
from infer.routing import DEFAULT_ROUTING, Route, RoutingTable, load_routing
from infer.session import host_threads

__all__ = ["DEFAULT_MODELS", "Segmenter"]

DEFAULT_MODELS = Path(__file__).resolve().parents[1] / "work_dir"


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Segmenter:
    """Segment challenge cases with the models and strategies a routing table names.

    Args:
        models_dir: folder of exported model folders (one per name the table uses).
        routing: a routing table file or a loaded :class:`~infer.routing.RoutingTable`.
        backend: ``"openvino"`` or ``"onnxruntime"``.
        threads: CPU threads per model (None: all this process may use).
        cache_dir: OpenVINO compiled-model cache folder (None: no cache).
        max_array_bytes: the largest input array :meth:`run_folder` inflates (checked from the NPY
            header first, so a small file declaring gigabytes costs nothing).
        precision: the encoders' precision, ``auto`` (f32 unless this CPU runs a lower precision
            natively and the model folder records it passing the fidelity gate), ``f32``,
            ``bf16`` or ``int8`` (:mod:`infer.precision`).
        interactive: how interactive-format cases are refined (mask prompt, refinement rounds).

    Raises:
        RoutingError: the routing table file is unreadable or invalid.
    """

    def __init__(self, models_dir: str | Path = DEFAULT_MODELS, routing: str | Path | RoutingTable = DEFAULT_ROUTING,
                 backend: str = "openvino", threads: int | None = None, cache_dir: str | Path | None = None,
                 max_array_bytes: int = MAX_ARRAY_BYTES, precision: str = "auto",
                 interactive: InteractiveOptions = InteractiveOptions()) -> None:
        self.max_array_bytes = max_array_bytes
        self.interactive = interactive
        self.table = routing if isinstance(routing, RoutingTable) else load_routing(routing)
        self.pool = ModelPool(Path(models_dir), backend, threads or host_threads(),
                              None if cache_dir is None else Path(cache_dir), precision)

    def route(self, dimension: Dimension, modality: str | None) -> Route:
        """The route for a case of ``dimension`` and ``modality`` (any accepted spelling; None or
        unknown: the dimension's default route)."""
        return self.table.route_for(dimension, canonical_modality(modality) if modality else None)

    def segment(self, imgs: np.ndarray, boxes: np.ndarray, dimension: Dimension,
                modality: str | None = None) -> np.ndarray:
        """Labels for one case held in memory.

        Args:
            imgs: 2D: (H, W, 3) uint8; 3D: (D, H, W) uint8 (other integer or whole-number arrays
                within 0..255 are converted).
            boxes: 2D: (N, 4) ``[x_min, y_min, x_max, y_max]``; 3D: (N, 6)
                ``[x_min, y_min, z_min, x_max, y_max, z_max]``, original pixels, maxima inclusive.
            dimension: ``"2D"`` or ``"3D"``.
            modality: picks the route (e.g. ``"CT"``, ``"Microscopy"``).

        Returns:
            uint16 labels of the image's spatial shape: box k (0-based) is label k + 1, later boxes win.

        Raises:
            CaseError: arrays of the wrong shape, dtype or values (the message names ``<array>``).
            ModelError: the routed model folder is missing or unusable.
        """
        case = check_case("<array>", dimension, imgs, boxes)
        route = self.route(dimension, modality)
        predictor = SlicePredictor(self.pool.get(route.model))
        segs, _ = segment_case(case, route, predictor, self.table.propagation_margin)
        return segs

    def plan(self, cases: list[Path]) -> tuple[list[tuple[Path, Route]], list[CaseResult], list[str]]:
        """Route every case file: the runnable (case, route) pairs, the cases that cannot run (no
        2D/3D prefix, missing model folder) as failed results, and warnings (unknown modality).
        An interactive-format case without the prefix is 3D (the format is), its modality the
        name's first token (``CT_AbdTumor_001.npz``). Nothing is compiled here."""
        runnable, failed, warnings = [], [], []
        for path in cases:
            name = parse_case_name(path)
            if name.dimension is None and is_interactive(path):
                token = path.name.split("_")[0]
                name = CaseName("3D", canonical_modality(token), token)
            if name.dimension is None:
                failed.append(CaseResult(path, False, 0.0, f"{path}: file name must start with '2D' or '3D' "
                                                           "(<2D|3D>Box_<Modality>_<id>.npz)"))
                continue
            route = self.table.route_for(name.dimension, name.modality)
            if name.modality is None:
                warnings.append(f"warning: {path}: unknown modality {name.token!r}; using the {name.dimension} "
                                f"default route -> {route.model} ({route.strategy})")
            folder = self.pool.folder(route.model)
            if not folder.is_dir():
                failed.append(CaseResult(path, False, 0.0, f"{path}: model folder {folder} not found (route "
                                                           f"{route.describe()}); {self.table.export_hint(folder)}",
                                         route=route))
                continue
            runnable.append((path, route))
        return runnable, failed, warnings

    def run_folder(self, input_dir: str | Path, output_dir: str | Path,
                   on_result: Callable[[CaseResult], None] | None = None,
                   warn: Callable[[str], None] = _to_stderr,
                   progress: Callable[[list[tuple[Path, Route]]], Iterable[tuple[Path, Route]]] = iter,
                   ) -> list[CaseResult]:
        """Segment every ``*.npz`` case of ``input_dir`` (name order, hidden names skipped) into ``output_dir``.

        A case that fails costs only itself: its result carries the one-line error and the others
        run. Cases that cannot run are reported before any model is compiled; the first routed
        model compiles while the first case is read.

        Args:
            on_result: called with each result as it is known (failed plans first).
            warn: receives each warning line.
            progress: wraps the runnable cases (e.g. a progress bar).

        Returns:
            One result per case: failed plans first, then the runs in order.
        """
        input_dir, output_dir = Path(input_dir), Path(output_dir)
        cases = case_files(input_dir)
        if not cases:
            warn(f"warning: {input_dir}: no *.npz cases")
        runnable, results, warnings = self.plan(cases)
        for line in warnings:
            warn(line)
        for result in results:
            if on_result is not None:
                on_result(result)
        if runnable:
            self.pool.prefetch(runnable[0][1].model)
        for path, route in progress(runnable):
            result = run_case(path, route, self.pool, output_dir, self.table.propagation_margin,
                              max_array_bytes=self.max_array_bytes, interactive=self.interactive)
            results.append(result)
            if on_result is not None:
                on_result(result)
        self.pool.wait()
        return results
