"""Bring your own data: NIfTI / DICOM / 2D images to challenge npz files and masks back.

A runtime tool (numpy, SciPy, SimpleITK; never torch, never ``train``) that the submission
image does not need: nothing under ``infer`` imports it. Command line in ``__main__``;
documentation in docs/convert.md.
"""
from convert.errors import ConversionError
from convert.from_npz import convert_from_npz
from convert.to_npz import convert_to_npz

__all__ = ["ConversionError", "convert_from_npz", "convert_to_npz"]
