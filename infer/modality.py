"""Dimension and modality of a case, parsed from its file name.

A challenge case is named ``<2D|3D>Box_<Modality>_<id>.npz`` (shared/REFERENCE.md 1.2). The
dimension is the ``2D``/``3D`` prefix of the first ``_`` token; the modality is the whole second
token, looked up in a fixed set with the spelling aliases of the training folders
(``Microscopy`` for ``Microscope``, ``XRay`` for ``X-Ray``). Never a substring test: ``OCT``
contains ``CT``, and the reference systems' ``'CT' in name`` checks are the bug we avoid.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["MODALITIES", "CaseName", "parse_case_name", "canonical_modality"]

Dimension = Literal["2D", "3D"]

MODALITIES = ("CT", "MR", "PET", "US", "X-Ray", "Dermoscopy", "Endoscopy", "Fundus", "Microscope",
              "Mammography", "OCT")
"""Test-set spellings; routing tables and logs use these."""

_ALIASES = {"microscopy": "Microscope", "xray": "X-Ray"}
_LOOKUP = {name.lower(): name for name in MODALITIES} | _ALIASES


@dataclass(frozen=True)
class CaseName:
    """What a file name says about its case.

    ``modality`` is the canonical spelling, or None when the token is not a known modality;
    ``token`` is the second ``_`` token as written (``""`` when absent).
    """

    dimension: Dimension | None
    modality: str | None
    token: str


def canonical_modality(token: str) -> str | None:
    """Canonical spelling of a whole modality token (case-insensitive), None if unknown."""
    return _LOOKUP.get(token.lower())


def parse_case_name(path: str | Path) -> CaseName:
    """Parse ``<2D|3D>Box_<Modality>_<id>.npz``.

    ``dimension`` is None when the name starts with neither ``2D`` nor ``3D``.

    >>> parse_case_name("2DBox_Microscopy_0007.npz")
    CaseName(dimension='2D', modality='Microscope', token='Microscopy')
    >>> parse_case_name("2DBox_OCT_0001.npz").modality
    'OCT'
    """
    name = Path(path).name
    tokens = name.removesuffix(".npz").split("_")
    first = tokens[0]
    dimension: Dimension | None = "3D" if first.startswith("3D") else "2D" if first.startswith("2D") else None
    token = tokens[1] if len(tokens) > 1 else ""
    return CaseName(dimension, canonical_modality(token), token)
