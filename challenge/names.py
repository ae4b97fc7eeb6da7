"""Dimension and modality of a case, parsed from its file name.

A challenge case is named ``<2D|3D>Box_<Modality>_<id>.npz`` (docs/challenge_format.md). The
dimension is the ``2D``/``3D`` prefix of the first ``_`` token; the modality is the whole second
token, looked up case-insensitively in a fixed set with the organisers' own other spellings (their
training folders say ``Microscopy`` and ``XRay`` where the test set says ``Microscope`` and
``X-Ray``). Never a substring test: ``OCT`` contains ``CT``. Where a person types a modality (the
converter's ``--modality``), everyday words (``MRI``, ``ultrasound``) are accepted too; a file
named ``3DBox_MRI_...`` is still not a challenge case.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DIMENSIONS", "MODALITIES", "ALIASES", "TYPED_ALIASES", "Dimension", "CaseName", "canonical_modality", "require_modality",
           "parse_case_name"]

Dimension = Literal["2D", "3D"]
DIMENSIONS: tuple[Dimension, ...] = ("2D", "3D")

MODALITIES = ("CT", "MR", "PET", "US", "X-Ray", "Dermoscopy", "Endoscopy", "Fundus", "Microscope",
              "Mammography", "OCT")
"""Test-set spellings; routing tables, output names and logs use these."""

ALIASES = {"microscopy": "Microscope", "xray": "X-Ray"}
"""The organisers' other spellings (lower case), accepted in file names and folder names."""

TYPED_ALIASES = ALIASES | {"mri": "MR", "x_ray": "X-Ray", "ultrasound": "US", "mammo": "Mammography"}
"""Everything :func:`require_modality` accepts for a modality a person types."""

_LOOKUP = {name.lower(): name for name in MODALITIES} | ALIASES
_TYPED_LOOKUP = {name.lower(): name for name in MODALITIES} | TYPED_ALIASES


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


def require_modality(token: str) -> str:
    """Canonical spelling of a modality a person typed (:data:`TYPED_ALIASES` accepted).

    Raises:
        ValueError: ``token`` is neither a known modality nor an alias; the message lists both.
    """
    found = _TYPED_LOOKUP.get(token.strip().lower())
    if found is None:
        raise ValueError(f"unknown modality {token!r}; expected one of {', '.join(MODALITIES)} "
                         f"(aliases: {', '.join(sorted(TYPED_ALIASES))})")
    return found


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
