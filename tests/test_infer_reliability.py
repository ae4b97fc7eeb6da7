"""Issue 13 through `python -m infer` (and predict.sh): bad input and faults cost one line, never
the inputs, the other cases or unbounded memory."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _infer_fakes import make_work_dir, run_cli, save_case, tiny_work_dir

import challenge.npz
from infer.cli import main

REPO = Path(__file__).resolve().parents[1]
IMG = np.zeros((64, 64, 3), np.uint8)
BOX = np.array([[1, 1, 9, 9]])


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    return tiny_work_dir(tmp_path_factory.mktemp("tiny_models"))


def _member(folder: Path, name: str, member: bytes, boxes: np.ndarray = BOX) -> Path:
    """A case whose ``imgs.npy`` member holds ``member`` as its bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, boxes)
    with zipfile.ZipFile(folder / name, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("imgs.npy", member)
        archive.writestr("boxes.npy", buffer.getvalue())
    return folder / name


def _errors(err: str) -> list[str]:
    return sorted(line for line in err.splitlines() if line.startswith("error: "))


@pytest.mark.parametrize("alias", ["same", "symlink", "dotdot"])
def test_output_folder_equal_to_input_folder_is_refused(tmp_path, capsys, tiny_models, alias):
    inputs = tmp_path / "in"
    case = save_case(inputs, "2DBox_US_0001.npz", imgs=IMG, boxes=BOX)
    before = case.read_bytes()
    (tmp_path / "link").symlink_to(inputs)
    output = {"same": inputs, "symlink": tmp_path / "link", "dotdot": inputs / ".." / "in"}[alias]
    code, out, err = run_cli(capsys, inputs, output, tiny_models)
    assert (code, err.strip()) == (2, f"error: {output}: output folder is the input folder {inputs}; "
                                      "refusing to overwrite the inputs")
    assert case.read_bytes() == before and sorted(os.listdir(inputs)) == [case.name]


def test_an_output_path_that_is_an_input_file_is_refused(tmp_path, capsys, tiny_models):
    case = save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=IMG, boxes=BOX)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / case.name).symlink_to(case)
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    assert (code, err.strip()) == (2, f"error: {tmp_path / 'out'}: output {tmp_path / 'out' / case.name} is the "
                                      f"input file {case}; refusing to overwrite the inputs")


def test_a_member_declaring_more_than_the_bound_is_refused_before_inflating(tmp_path, capsys, tiny_models):
    header = io.BytesIO()  # 8 GiB declared, a few bytes stored: only the header is ever read
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (2048, 2048, 2048)})
    bomb = _member(tmp_path / "in", "3DBox_CT_0001.npz", header.getvalue() + b"\0" * 64, np.zeros((0, 6)))
    good = save_case(tmp_path / "in", "3DBox_CT_0002.npz", imgs=np.zeros((2, 16, 16), np.uint8), boxes=np.zeros((0, 6)))
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    assert code == 1
    assert _errors(err) == [f"error: {bomb}: 'imgs' declares 8589934592 bytes (uint8 (2048, 2048, 2048)), above the "
                            "limit of 1073741824 bytes per array"]
    assert (tmp_path / "out" / good.name).is_file()
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out2", tiny_models, "--max-array-bytes", "100")
    assert f"error: {good}: 'imgs' declares 512 bytes (uint8 (2, 16, 16)), above the limit of 100 bytes per array" in err


def test_members_that_are_not_npy_and_odd_files_are_named_failed_cases(tmp_path, capsys, tiny_models):
    inputs = tmp_path / "in"
    empty = _member(inputs, "2DBox_US_0001.npz", b"")
    magic = _member(inputs, "2DBox_US_0002.npz", b"PK not an array")
    short = _member(inputs, "2DBox_US_0008.npz", np.lib.format.MAGIC_PREFIX + b"\x01")
    long_header = _member(inputs, "2DBox_US_0003.npz", np.lib.format.MAGIC_PREFIX + b"\x02\x00"
                          + (20000).to_bytes(4, "little") + b"{" + b" " * 19998 + b"\n")
    dangling = inputs / "2DBox_US_0004.npz"
    dangling.symlink_to(tmp_path / "gone.npz")
    fifo = inputs / "2DBox_US_0005.npz"
    os.mkfifo(fifo)
    (inputs / ".tmp-99-2DBox_US_0006.npz").write_bytes(b"left by a killed writer")  # never a case
    good = save_case(inputs, "2DBox_US_0007.npz", imgs=IMG, boxes=BOX)
    code, out, err = run_cli(capsys, inputs, tmp_path / "out", tiny_models)
    assert code == 1
    assert _errors(err) == sorted([
        f"error: {empty}: not a readable npz file (member 'imgs': not an NPY array)",
        f"error: {magic}: not a readable npz file (member 'imgs': not an NPY array)",
        f"error: {long_header}: not a readable npz file (member 'imgs': NPY header longer than 10000 bytes)",
        f"error: {dangling}: dangling symbolic link",
        f"error: {fifo}: not a regular file",
        f"error: {short}: not a readable npz file (member 'imgs': NPY header truncated)"])
    assert os.listdir(tmp_path / "out") == [good.name]
    assert out.strip().splitlines()[-1].startswith("7 cases: 1 done, 6 failed, ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_input_file_and_folder(tmp_path, capsys, tiny_models):
    case = save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=IMG, boxes=BOX)
    case.chmod(0)
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    assert (code, _errors(err)) == (1, [f"error: {case}: cannot read the file (Permission denied)"])
    (tmp_path / "in").chmod(0)
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    (tmp_path / "in").chmod(0o755)
    assert (code, err.strip()) == (2, f"error: {tmp_path / 'in'}: input folder cannot be read (Permission denied)")


def test_an_input_folder_that_cannot_be_listed_is_an_error_not_no_cases(tmp_path, capsys, tiny_models, monkeypatch):
    (tmp_path / "in").mkdir()

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("challenge.folders.os.scandir", denied)  # root (CI) reads any folder
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    assert (code, err.strip()) == (2, f"error: {tmp_path / 'in'}: input folder cannot be read (Permission denied)")


def test_a_file_name_that_is_not_utf8_costs_nothing(tmp_path, tiny_models):
    inputs = tmp_path / "in"
    odd = os.fsdecode(b"2DBox_US_\xff.npz")
    save_case(inputs, odd, imgs=IMG, boxes=BOX)  # its log line goes to stdout, strict UTF-8
    save_case(inputs, "3DBox_CT_0001.npz", imgs=np.zeros((2, 16, 16), np.uint8), boxes=np.zeros((0, 6)))
    env = dict(os.environ, PYTHONIOENCODING="utf-8", INPUT_DIR=str(inputs), OUTPUT_DIR=str(tmp_path / "out"),
               PYTHON=sys.executable, INFER_ARGS=f"--models {tiny_models}")
    run = subprocess.run(["sh", str(REPO / "predict.sh")], env=env, capture_output=True, encoding="utf-8")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("2DBox_US_\\udcff.npz: 2D US -> litemedsam (image), 64x64x3, 1 boxes")
    assert sorted(os.listdir(tmp_path / "out")) == sorted([odd, "3DBox_CT_0001.npz"])


def test_an_unwritable_efficiency_csv_is_refused_before_any_case(tmp_path, capsys, tiny_models):
    save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=IMG, boxes=BOX)
    (tmp_path / "csv").mkdir()
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models, "--efficiency-csv", str(tmp_path / "csv"))
    assert (code, err.strip()) == (2, f"error: {tmp_path / 'csv'}: efficiency CSV cannot be written (is a folder)")
    assert not (tmp_path / "out").exists()


def test_too_many_boxes_and_a_summarised_log_line(tmp_path, capsys, tiny_models):
    many = save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=IMG, boxes=np.tile(BOX, (65536, 1)))
    outside = np.tile([[100, 100, 120, 120]], (65534, 1))  # every row outside the 64 x 64 image
    save_case(tmp_path / "in", "2DBox_US_0002.npz", imgs=IMG, boxes=outside)
    code, out, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    assert (code, _errors(err)) == (1, [f"error: {many}: 'boxes' has 65536 rows; at most 65535 fit the uint16 "
                                        "output labels"])
    line = next(line for line in out.splitlines() if line.startswith("2DBox_US_0002.npz"))
    assert line.endswith("; box row(s) 0, 1, 2, 3, 4 and 65529 more (65534 in all) lie outside the image: empty mask")


def test_very_thin_images_are_segmented(tmp_path, capsys, tiny_models):
    save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=np.full((1, 1000, 3), 9, np.uint8), boxes=np.array([[5, 0, 50, 0]]))
    save_case(tmp_path / "in", "3DBox_CT_0001.npz", imgs=np.full((4, 1, 1000), 9, np.uint8),
          boxes=np.array([[5, 0, 0, 50, 0, 3]]))
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == ["2DBox_US_0001.npz", "3DBox_CT_0001.npz"]


@pytest.mark.parametrize("margin", ["NaN", "Infinity", "1e308", "-1"])
def test_propagation_margin_must_be_a_sensible_finite_number(tmp_path, capsys, tiny_models, margin):
    table = json.loads((REPO / "infer" / "routing.json").read_text())
    path = tmp_path / "routing.json"
    path.write_text(json.dumps(table).replace('"propagation_margin": 3', f'"propagation_margin": {margin}'))
    (tmp_path / "in").mkdir()
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models, "--routing", str(path))
    shown = {"NaN": "nan", "Infinity": "inf", "1e308": "1e+308", "-1": "-1"}[margin]
    assert (code, err.strip()) == (2, f"error: {path}: propagation_margin must be a number from 0 to 64 "
                                      f"(model-input pixels), got {shown}")


def _broken_models(root: Path, tiny_models: Path) -> Path:
    """A models folder whose litemedsam has a bad sidecar field and whose efficientsam has a garbage IR."""
    lite, esam = root / "lite", root / "esam"
    shutil.copytree(tiny_models / "litemedsam", lite)
    shutil.copytree(tiny_models / "efficientsam_vitt", esam)
    sidecar = json.loads((lite / "model.json").read_text())
    (lite / "model.json").write_text(json.dumps(sidecar | {"mask_outputs": "three"}))
    (esam / "encoder.xml").write_text("garbage<xml")
    return make_work_dir(root / "work_dir", lite, esam)


def test_model_errors_name_the_file_the_field_and_the_cause(tmp_path, capfd, tiny_models):
    models = _broken_models(tmp_path / "models", tiny_models)
    us = save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=IMG, boxes=BOX)
    xray = save_case(tmp_path / "in", "2DBox_X-Ray_0001.npz", imgs=IMG, boxes=BOX)
    code = main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--models", str(models)])
    err = capfd.readouterr().err
    assert code == 1
    assert err.splitlines() == [
        f"error: {us}: {models / 'litemedsam' / 'model.json'}: field 'mask_outputs' must be a positive integer, "
        "got 'three'",
        f"error: {xray}: {models / 'efficientsam_vitt' / 'encoder.xml'}: not OpenVINO IR (not XML: not well-formed "
        "(invalid token): line 1, column 7)"]


def test_runtime_messages_keep_the_cause_not_the_location(tmp_path, tiny_models):
    from infer.errors import ModelError
    from infer.session import open_session

    model = tmp_path / "encoder.xml"
    model.write_text('<?xml version="1.0"?><net name="x" version="11"><layers><layer id="0"/></layers></net>')
    with pytest.raises(ModelError) as caught:
        open_session(model, "openvino", 1)
    assert str(caught.value).startswith(f"{model}: OpenVINO cannot compile it (")
    assert "Exception from" not in str(caught.value)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_write_leaves_no_partial_file_and_one_line(tmp_path, capsys, tiny_models, monkeypatch, signum):
    for i in range(3):
        save_case(tmp_path / "in", f"2DBox_US_000{i}.npz", imgs=IMG, boxes=BOX)
    save, calls = challenge.npz.save_npz, []

    def killed_mid_write(path, arrays, compresslevel=None):
        calls.append(path)
        Path(path).write_bytes(b"PK partial")
        if len(calls) == 2:
            os.kill(os.getpid(), signum)
        save(path, arrays, compresslevel)

    monkeypatch.setattr(challenge.npz, "save_npz", killed_mid_write)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # SIG_IGN under `nohup ... &`
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    name = signal.Signals(signum).name
    assert (code, err.strip()) == (128 + signum, f"python -m infer: interrupted by {name}; finished outputs are "
                                                 "kept, no partial file is left")
    assert os.listdir(tmp_path / "out") == ["2DBox_US_0000.npz"]
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the caller's handlers are back
