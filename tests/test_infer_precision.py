"""Encoder precision per CPU: flags, the choice ``auto`` makes, explicit requests, int8 files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _infer_fakes import write_tiny_model

from infer.errors import ModelError
from infer.model_spec import load_model_spec
from infer.models import load_model
from infer.precision import choose_precision, cpu_flags, cpu_summary, native_precisions
from train.export_precision import label_agreement

AVX2 = {"sse4_2", "avx2", "fma"}
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("precision") / "tiny")


def _with_gates(folder: Path, target: Path, **passed: bool) -> Path:
    shutil.copytree(folder, target)
    data = json.loads((target / "model.json").read_text())
    data["precisions"] = {p: {"gate": {"passed": ok}} for p, ok in passed.items()}
    (target / "model.json").write_text(json.dumps(data))
    return target


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
    summary = cpu_summary(info)
    assert summary.startswith("X; avx2 yes, fma no, avx512f no") and "amx_bf16 yes" in summary
    assert cpu_summary(tmp_path / "missing") == "unknown CPU"


def test_native_precisions_follow_the_instruction_sets():
    assert native_precisions(AVX2) == ("f32",)
    assert native_precisions(AVX2 | {"avx_vnni"}) == ("f32", "int8")
    assert native_precisions(SAPPHIRE_RAPIDS) == ("f32", "bf16", "int8")


def test_auto_needs_both_the_cpu_and_a_passed_gate(tiny, tmp_path):
    spec = load_model_spec(tiny)
    assert choose_precision("auto", spec, SAPPHIRE_RAPIDS) == ("f32", None)  # no gate recorded
    bf16_only = load_model_spec(_with_gates(tiny, tmp_path / "a", bf16=True, int8=False))
    assert choose_precision("auto", bf16_only, SAPPHIRE_RAPIDS) == ("bf16", None)
    assert choose_precision("auto", bf16_only, AVX2) == ("f32", None)
    both = load_model_spec(_with_gates(tiny, tmp_path / "b", bf16=True, int8=True))
    assert choose_precision("auto", both, SAPPHIRE_RAPIDS) == ("int8", None)
    assert choose_precision("auto", both, AVX2 | {"avx512_bf16"}) == ("bf16", None)


def test_an_explicit_request_runs_but_says_what_it_lacks(tiny, tmp_path):
    spec = load_model_spec(tiny)
    chosen, warning = choose_precision("bf16", spec, AVX2)
    assert chosen == "bf16"
    assert "lacks native support (amx_bf16 / avx512_bf16), so OpenVINO runs it as f32" in warning
    assert "does not record it passing the fidelity gate" in warning
    gated = load_model_spec(_with_gates(tiny, tmp_path / "g", bf16=True))
    assert choose_precision("bf16", gated, SAPPHIRE_RAPIDS) == ("bf16", None)
    assert choose_precision("f32", spec, AVX2) == ("f32", None)
    with pytest.raises(ValueError, match="precision 'fp8' is not one of"):
        choose_precision("fp8", spec, AVX2)


def test_int8_needs_its_own_encoder_file(tiny, tmp_path):
    with pytest.raises(ModelError, match="no int8 encoder"):
        load_model(tiny, "openvino", 1, precision="int8")
    folder = _with_gates(tiny, tmp_path / "q", int8=True)
    data = json.loads((folder / "model.json").read_text())
    data["precisions"]["int8"]["files"] = {"encoder": {"openvino": "encoder_int8.xml"}}
    (folder / "model.json").write_text(json.dumps(data))
    spec = load_model_spec(folder)
    assert spec.model_file("encoder", "openvino", "int8") == folder / "encoder_int8.xml"
    assert spec.model_file("decoder", "openvino", "int8") == folder / "decoder.xml"
    assert spec.model_file("encoder", "onnxruntime", "int8") == folder / "encoder.onnx"
    with pytest.raises(ModelError, match="encoder_int8.xml: model file not found"):
        load_model(folder, "openvino", 1, precision="int8")


def test_onnxruntime_runs_f32_only(tiny, capsys):
    assert load_model(tiny, "onnxruntime", 1, precision="auto").precision == "f32"
    with pytest.raises(ModelError, match="precision bf16 needs the openvino backend"):
        load_model(tiny, "onnxruntime", 1, precision="bf16")


def test_label_agreement_of_hand_made_maps():
    a = np.zeros((4, 4), np.uint16)
    b = a.copy()
    assert label_agreement(a, b) == 1.0
    a[0, :2] = 1  # label 1: 2 px against 2 px, 1 shared -> 0.5
    b[0, 1:3] = 1
    a[3, 3] = 2  # label 2 only in a -> 0
    assert label_agreement(a, b) == pytest.approx((0.5 + 0.0) / 2)
