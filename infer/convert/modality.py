"""Modality names as the challenge file names spell them, with accepted aliases.

The second ``_``-separated token of a case name (``3DBox_CT_0001.npz``) is the modality;
the organisers' test set spells ``Microscope`` and ``X-Ray`` where their training folders
say ``Microscopy`` and ``XRay`` (shared/REFERENCE.md section 1.2). A user may type either,
in any letter case; the output file always carries the canonical test-set spelling.
"""
from __future__ import annotations

MODALITIES = (
    "CT", "MR", "PET", "US", "X-Ray", "Dermoscopy", "Endoscopy", "Fundus", "Microscope", "Mammography", "OCT",
)

_ALIASES = {
    "mri": "MR",
    "xray": "X-Ray",
    "x_ray": "X-Ray",
    "microscopy": "Microscope",
    "ultrasound": "US",
    "mammo": "Mammography",
}
_LOOKUP = {name.lower(): name for name in MODALITIES} | _ALIASES


def canonical_modality(name: str) -> str:
    """Return the canonical spelling of ``name`` (whole-token match, case-insensitive).

    Raises:
        ValueError: ``name`` is neither a known modality nor an alias; the message lists both.
    """
    found = _LOOKUP.get(name.strip().lower())
    if found is None:
        raise ValueError(
            f"unknown modality {name!r}; expected one of {', '.join(MODALITIES)} "
            f"(aliases: {', '.join(sorted(_ALIASES))})"
        )
    return found
