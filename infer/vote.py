"""Per-voxel majority vote of three label volumes (PET: axial, coronal, sagittal propagation).

Vectorised, one pass (docs/reference_systems.md section 7 #10: the reference loops per voxel and resolves three-way ties to the
smallest label, usually background). Rule: the label two views agree on; when all three differ,
the axial label, the view the 3D box's slice range was drawn in.
"""
from __future__ import annotations

import numpy as np

__all__ = ["majority_vote"]


def majority_vote(axial: np.ndarray, coronal: np.ndarray, sagittal: np.ndarray) -> np.ndarray:
    """``a if a == b or a == c else (b if b == c else a)`` per voxel, a/b/c = axial/coronal/sagittal.

    All three must have the same shape; the result has axial's dtype.
    """
    if not axial.shape == coronal.shape == sagittal.shape:
        raise ValueError(f"vote needs equal shapes, got {axial.shape}, {coronal.shape}, {sagittal.shape}")
    # Whenever a agrees with b or c, a wins; otherwise b wins exactly when b == c.
    return np.where((coronal == sagittal) & (axial != coronal), coronal, axial).astype(axial.dtype, copy=False)
