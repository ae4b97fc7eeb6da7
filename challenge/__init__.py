"""The challenge's case format, in one place: numpy only, no other package of ours.

``names``: case file names, dimensions and the 11 modalities with their spelling aliases.
``npz``: the keys and layouts of input, ground-truth and output files; safe reading (never
unpickles, refuses members larger than a stated bound before inflating them) and atomic writing.
``atomic``: write any file through a temporary name in its folder, then rename it.
``interactive``: the CVPR 2025 interactive format (boxes and clicks per class, pickled by the
organisers' evaluator): safe reading with a restricted unpickler, and a writer (docs/interactive.md).

infer, evaluation, convert, train and test_demo all take the format from here.
"""
from challenge.atomic import atomic_path
from challenge.interactive import ClassBox, ClassClicks, InteractiveCase, read_interactive_case
from challenge.names import MODALITIES, CaseName, Dimension, canonical_modality, parse_case_name, require_modality
from challenge.npz import DEFAULT_MAX_MEMBER_BYTES, NpzError, open_npz, read_npz, write_npz

__all__ = ["MODALITIES", "CaseName", "Dimension", "canonical_modality", "parse_case_name", "require_modality",
           "DEFAULT_MAX_MEMBER_BYTES", "NpzError", "open_npz", "read_npz", "write_npz", "atomic_path",
           "ClassBox", "ClassClicks", "InteractiveCase", "read_interactive_case"]
