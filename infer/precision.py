"""Which numeric precision a model's encoder runs in on this CPU.

Lower precision pays only where the CPU does it natively: bf16 on AVX-512-BF16 / AMX CPUs,
int8 on VNNI / AMX CPUs. Elsewhere OpenVINO compiles a bf16 request as f32 (checked: the
compiled model reports f32 and its outputs are bit-identical) and int8 without VNNI is no
faster (docs/precision.md), while it changes the numbers. So ``auto`` picks a lower
precision only where the CPU has the instructions for it AND the model folder records that
precision passing the fidelity gate (``precisions`` in ``model.json``, written by
``python -m train.export_precision``); everything else runs f32, as the reference does.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from infer.model_spec import ModelSpec

__all__ = ["PRECISIONS", "REQUESTS", "NATIVE_FLAGS", "cpu_flags", "cpu_summary", "native_precisions", "gate_passed",
           "choose_precision"]

PRECISIONS = ("f32", "bf16", "int8")
REQUESTS = ("auto", *PRECISIONS)

NATIVE_FLAGS: dict[str, frozenset[str]] = {
    "bf16": frozenset({"avx512_bf16", "amx_bf16"}),
    "int8": frozenset({"avx512_vnni", "avx_vnni", "amx_int8"}),
}
"""Linux /proc/cpuinfo flags with which a precision runs natively (any one suffices)."""


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (empty when they cannot be read: then only f32 is native)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_summary(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU model and the flags that pick OpenVINO's kernels and the native precisions, for
    benchmark output (a time means something only beside the CPU that gave it)."""
    try:
        cpu_info = cpuinfo.read_text(errors="replace")
    except OSError:
        return "unknown CPU"
    model = next((line.partition(":")[2].strip() for line in cpu_info.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    shown = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    flags = cpu_flags(cpuinfo)
    return f"{model}; " + ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in shown)


def native_precisions(flags: Iterable[str]) -> tuple[str, ...]:
    """Precisions this CPU runs natively, f32 always."""
    have = set(flags)
    return ("f32",) + tuple(p for p, needs in NATIVE_FLAGS.items() if have & needs)


def gate_passed(spec: ModelSpec, precision: str) -> bool:
    """Whether ``model.json`` records ``precision`` passing the fidelity gate (f32 is the reference)."""
    if precision == "f32":
        return True
    entry = spec.raw.get("precisions", {}).get(precision, {})
    return bool(entry.get("gate", {}).get("passed", False))


def choose_precision(requested: str, spec: ModelSpec, flags: Iterable[str]) -> tuple[str, str | None]:
    """The precision to run ``spec``'s encoder in, and a warning line when an explicit request
    runs without the CPU support or the recorded gate that ``auto`` would need (None otherwise).

    Raises:
        ValueError: unknown request.
    """
    if requested not in REQUESTS:
        raise ValueError(f"precision {requested!r} is not one of {list(REQUESTS)}")
    native = native_precisions(flags)
    if requested == "auto":
        for precision in ("int8", "bf16"):
            if precision in native and gate_passed(spec, precision):
                return precision, None
        return "f32", None
    problems = []
    if requested not in native:
        lacking = "this CPU lacks native support (" + " / ".join(sorted(NATIVE_FLAGS[requested])) + ")"
        problems.append(lacking + (", so OpenVINO runs it as f32" if requested == "bf16" else ""))
    if not gate_passed(spec, requested):
        problems.append(f"{spec.folder / 'model.json'} does not record it passing the fidelity gate")
    warning = f"warning: {spec.name}: {requested} requested although " + " and ".join(problems) if problems else None
    return requested, warning
