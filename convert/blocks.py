"""Slab-wise processing along axis 0, so temporaries (float64, int64 indices) stay small."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK_ELEMENTS = 1 << 22  # 32 MB of float64 or int64 per slab on a 300 x 512 x 512 volume


def slabs(array: np.ndarray) -> Iterator[slice]:
    """Consecutive slices of axis 0 covering about :data:`BLOCK_ELEMENTS` elements each."""
    step = max(1, BLOCK_ELEMENTS // max(1, array[:1].size))
    for start in range(0, array.shape[0], step):
        yield slice(start, start + step)
