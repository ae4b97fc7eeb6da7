"""The challenge format package: names, safe npz reading with its size bound, atomic writing."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from challenge import NpzError, atomic_path, canonical_modality, open_npz, parse_case_name, read_npz, require_modality, write_npz


def test_file_names_take_the_organisers_spellings_and_typed_names_take_everyday_words():
    assert parse_case_name("2DBox_xray_1.npz").modality == "X-Ray"
    assert parse_case_name("2DBox_Microscopy_1.npz").modality == "Microscope"
    assert parse_case_name("3DBox_MRI_1.npz").modality is None
    assert canonical_modality("OCT") == "OCT" and canonical_modality("C") is None
    assert require_modality(" Ultrasound ") == "US"
    with pytest.raises(ValueError, match=r"^unknown modality 'CTX'; expected one of CT, MR, "):
        require_modality("CTX")


def test_a_member_declaring_more_than_the_bound_is_refused_before_it_is_inflated(tmp_path):
    path = tmp_path / "big.npz"
    write_npz(path, {"imgs": np.zeros((10, 20), np.uint16), "boxes": np.zeros((1, 4))})
    assert read_npz(path, ("imgs",), max_member_bytes=400)["imgs"].shape == (10, 20)
    with pytest.raises(NpzError) as info:
        read_npz(path, ("boxes", "imgs"), max_member_bytes=399)
    assert str(info.value) == f"{path}: 'imgs' declares 400 bytes (uint16 (10, 20)), above the limit of 399 bytes per array"


def test_a_member_that_is_not_npy_and_a_pickled_member_are_one_line_errors(tmp_path):
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("imgs.npy", b"not an array at all")
    with pytest.raises(NpzError) as info:
        read_npz(path, ("imgs",))
    assert str(info.value) == f"{path}: not a readable npz file (member 'imgs': not an NPY array)"
    np.savez(path, boxes=np.array([None, 1], dtype=object))
    with open_npz(path) as archive, pytest.raises(NpzError) as info:
        archive.read("boxes")
    assert info.value.problem == "'boxes' is a pickled object array (refused: inputs are read with allow_pickle=False)"


def test_missing_keys_and_files_name_the_file(tmp_path):
    path = tmp_path / "a.npz"
    write_npz(path, {"imgs": np.zeros(3)})
    with pytest.raises(NpzError, match=r"a\.npz: missing key 'boxes' \(has \['imgs'\]\)$"):
        read_npz(path, ("imgs", "boxes"))
    with pytest.raises(NpzError, match=r"b\.npz: file not found$"):
        read_npz(tmp_path / "b.npz", ("imgs",))


def test_written_npz_is_what_savez_compressed_writes_and_leaves_nothing_on_failure(tmp_path):
    segs = np.arange(600, dtype=np.uint16).reshape(20, 30)
    np.savez_compressed(tmp_path / "numpy.npz", segs=segs)
    write_npz(tmp_path / "ours.npz", {"segs": segs})
    assert (tmp_path / "ours.npz").read_bytes() == (tmp_path / "numpy.npz").read_bytes()
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "c.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["numpy.npz", "ours.npz"]
