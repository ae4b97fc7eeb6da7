"""`python -m infer` end to end on tiny model folders whose mask is the prompt box.

With a 256 x 256 image the LiteMedSAM-style tiny model's mask is exactly the box, so every output
pixel is known in advance: later-box-wins, more than 255 labels, 3D propagation margins and the
bad-input rules are checked exactly. (tests/test_infer_e2e.py runs the real random-init models.)
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _infer_fakes import run_cli, save_case, tiny_work_dir

from test_demo.generate import SCENES, CaseSpec, generate_case, write_case

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    return tiny_work_dir(tmp_path_factory.mktemp("tiny_models"))


def _segs(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        assert archive.files == ["segs"]
        return archive["segs"]


def _painted(shape: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    """Expected labels when every mask is its box: box k -> k + 1, later boxes on top."""
    expected = np.zeros(shape, np.uint16)
    for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, int)):
        expected[y0:y1 + 1, x0:x1 + 1] = k + 1
    return expected


def test_every_modality_gives_named_uint16_outputs_of_the_input_shape(tmp_path, capsys, tiny_models):
    inputs = tmp_path / "in"
    shapes = {}
    for i, (modality, (dim, _)) in enumerate(SCENES.items()):
        case = generate_case(CaseSpec(modality, dim, (6, 40, 48) if dim == "3D" else (64, 80), 2,
                                      f"{dim}Box_{modality}_{i:04d}"), seed=i)
        write_case(case, inputs)
        shapes[f"{case.name}.npz"] = case.gts.shape
    code, out, err = run_cli(capsys, inputs, tmp_path / "out", tiny_models, "--efficiency-csv", str(tmp_path / "eff.csv"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(shapes)
    for name, shape in shapes.items():
        segs = _segs(tmp_path / "out" / name)
        assert segs.dtype == np.uint16 and segs.shape == shape
        assert set(np.unique(segs)) == {0, 1, 2}  # the tiny model always finds both boxes
    assert out.strip().splitlines()[-1].startswith(f"{len(shapes)} cases: {len(shapes)} done, 0 failed, ")
    assert "2DBox_X-Ray_0004.npz: 2D X-Ray -> efficientsam_vitt (image)" in out
    assert "3DBox_PET_0002.npz: 3D PET -> litemedsam_finetuned (three_view_vote)" in out
    assert "2DBox_Microscope_0008.npz: 2D Microscope -> litemedsam_finetuned (image)" in out
    assert "2DBox_OCT_0010.npz: 2D OCT -> litemedsam (image)" in out
    with open(tmp_path / "eff.csv") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(shapes) and all(r["status"] == "ok" for r in rows.values())
    assert rows["2DBox_US_0003.npz"]["encoder_calls"] == "1" and rows["2DBox_US_0003.npz"]["decoded_boxes"] == "2"
    assert all(float(r["time"]) > 0 and float(r["cpu_time"]) > 0 for r in rows.values())


def test_2d_labels_are_the_boxes_later_box_wins(tmp_path, capsys, tiny_models):
    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 100, 100], [50, 50, 150, 120], [0, 0, 30, 255], [200, 0, 255, 40]])
    save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=img, boxes=boxes)
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    assert code == 0, err
    np.testing.assert_array_equal(_segs(tmp_path / "out" / "2DBox_US_0001.npz"), _painted((256, 256), boxes))


def test_more_than_255_boxes(tmp_path, capsys, tiny_models):
    img = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    corners = np.array([(x, y) for y in range(0, 256, 15) for x in range(0, 256, 15)])[:300]
    boxes = np.concatenate([corners, corners + 9], axis=1)
    save_case(tmp_path / "in", "2DBox_Microscope_0001.npz", imgs=img, boxes=boxes)
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    assert code == 0, err
    segs = _segs(tmp_path / "out" / "2DBox_Microscope_0001.npz")
    assert segs.dtype == np.uint16 and segs.max() == 300
    np.testing.assert_array_equal(segs, _painted((256, 256), np.minimum(boxes, 255)))


def test_3d_propagation_grows_the_prompt_by_the_margin_within_the_3d_box(tmp_path, capsys, tiny_models):
    """The tiny model returns its prompt: the middle slice gets the 3D box, each next slice the
    previous mask's box grown by the 3 px margin, but never beyond the 3D box grown by that margin
    (so every other slice gets the box grown by 3 px): the margin rule, exactly, through the CLI."""
    vol = np.random.default_rng(2).integers(0, 256, (7, 256, 256), dtype=np.uint8)
    boxes = np.array([[100, 90, 1, 140, 120, 5], [30, 30, 6, 40, 50, 6], [120, 100, 0, 130, 110, 2]])
    save_case(tmp_path / "in", "3DBox_CT_0001.npz", imgs=vol, boxes=boxes, spacing=np.ones(3))
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models, "--efficiency-csv",
                        str(tmp_path / "eff.csv"))
    assert code == 0, err
    expected = np.zeros(vol.shape, np.uint16)
    for k, (x0, y0, z0, x1, y1, z1) in enumerate(boxes):
        mid = (z0 + z1) // 2
        for z in range(z0, z1 + 1):
            g = min(3 * abs(z - mid), 3)
            region = expected[z, max(0, y0 - g):min(255, y1 + g) + 1, max(0, x0 - g):min(255, x1 + g) + 1]
            np.maximum(region, k + 1, out=region)
    np.testing.assert_array_equal(_segs(tmp_path / "out" / "3DBox_CT_0001.npz"), expected)
    with open(tmp_path / "eff.csv") as handle:
        (row,) = csv.DictReader(handle)
    assert row["encoder_calls"] == "7"  # slices 0-6 once each, although box ranges overlap
    # the default strategy (axial_iou) also decodes the 3D box beside each prompt; the tiny model
    # rates both alike (constant IoU), so the prompt's mask is kept and the margin rule shows
    assert row["decoded_boxes"] == str(2 * (5 + 1 + 3))


def test_outputs_are_byte_identical_run_after_run(tmp_path, capsys, tiny_models):
    case = generate_case(CaseSpec("CT", "3D", (6, 40, 48), 2, "3DBox_CT_0001"), seed=3)
    write_case(case, tmp_path / "in")
    case = generate_case(CaseSpec("Fundus", "2D", (64, 80), 3, "2DBox_Fundus_0001"), seed=4)
    write_case(case, tmp_path / "in")
    for out in ("a", "b"):
        assert run_cli(capsys, tmp_path / "in", tmp_path / out, tiny_models)[0] == 0
    for name in ("3DBox_CT_0001.npz", "2DBox_Fundus_0001.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_onnxruntime_backend_gives_the_same_labels(tmp_path, capsys, tiny_models):
    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 100, 100], [50, 50, 150, 120]])
    save_case(tmp_path / "in", "2DBox_X-Ray_0001.npz", imgs=img, boxes=boxes)
    save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=img, boxes=boxes)
    for backend in ("openvino", "onnxruntime"):
        assert run_cli(capsys, tmp_path / "in", tmp_path / backend, tiny_models, "--backend", backend)[0] == 0
    for name in ("2DBox_X-Ray_0001.npz", "2DBox_US_0001.npz"):
        np.testing.assert_array_equal(_segs(tmp_path / "openvino" / name), _segs(tmp_path / "onnxruntime" / name))
    # the 1024-stretch model: box 1 (x 10..100 of 256) scales to the same pixels, up to resampling
    xray = _segs(tmp_path / "openvino" / "2DBox_X-Ray_0001.npz")
    assert (xray == _painted((256, 256), boxes)).mean() > 0.98


def test_bad_inputs_fail_alone_with_one_line_each(tmp_path, capsys, tiny_models):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    good = save_case(inputs, "2DBox_US_0001.npz", imgs=img, boxes=np.array([[1, 2, 30, 40]]))
    no_boxes = save_case(inputs, "2DBox_US_0002.npz", imgs=img, boxes=np.zeros((0, 4)))
    no_spacing = save_case(inputs, "3DBox_MR_0001.npz", imgs=np.zeros((3, 32, 32), np.uint8) + 9,
                       boxes=np.array([[2, 2, 0, 9, 9, 2]]))
    text = inputs / "2DBox_US_0003.npz"
    text.write_text("not a zip")
    truncated = inputs / "2DBox_US_0004.npz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    pickled = inputs / "2DBox_US_0005.npz"
    obj = np.empty(1, object)
    np.savez(pickled, imgs=img, boxes=obj)
    no_imgs = save_case(inputs, "2DBox_US_0006.npz", boxes=np.zeros((1, 4)))
    bad_shape = save_case(inputs, "2DBox_US_0007.npz", imgs=img[:, :, 0], boxes=np.zeros((1, 4)))
    bad_3d = save_case(inputs, "3DBox_CT_0002.npz", imgs=np.zeros((2, 8, 8, 3), np.uint8), boxes=np.zeros((1, 6)))
    floats = save_case(inputs, "2DBox_US_0008.npz", imgs=img.astype(np.float32) * 2, boxes=np.zeros((0, 4)))
    ints = save_case(inputs, "2DBox_US_0009.npz", imgs=img.astype(np.int32), boxes=np.array([[0, 0, 9, 9]]))
    nan_box = save_case(inputs, "2DBox_US_0010.npz", imgs=img, boxes=np.array([[1.0, np.nan, 5, 5]]))
    neg_box = save_case(inputs, "2DBox_US_0011.npz", imgs=img, boxes=np.array([[1, 1, 5, 5], [-1, 0, 3, 3]]))
    no_prefix = save_case(inputs, "Box_US_0012.npz", imgs=img, boxes=np.zeros((1, 4)))
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}

    code, out, err = run_cli(capsys, inputs, outputs, tiny_models)

    assert code == 1
    expected_errors = [
        f"error: {no_prefix}: file name must start with '2D' or '3D' (<2D|3D>Box_<Modality>_<id>.npz)",
        f"error: {text}: not a readable npz file (not a zip archive, or truncated)",
        f"error: {truncated}: not a readable npz file (not a zip archive, or truncated)",
        # pickled boxes are the 2025 interactive format's: read by its restricted unpickler, checked as dicts
        f"error: {pickled}: 'boxes' entry 0 is a NoneType, expected a dict with z_min, z_max, z_mid, z_mid_x_min, "
        "z_mid_y_min, z_mid_x_max, z_mid_y_max",
        f"error: {no_imgs}: missing key 'imgs' (has ['boxes'])",
        f"error: {bad_shape}: 2D 'imgs' must have shape (H, W, 3), got (256, 256)",
        f"error: {floats}: 'imgs' is float32 with values outside 0..255 (min {2 * int(img.min())}, "
        f"max {2 * int(img.max())}); expected uint8",
        f"error: {nan_box}: 'boxes' row 0 has a NaN or infinite coordinate [1, nan, 5, 5]",
        f"error: {neg_box}: 'boxes' row 1 has a negative coordinate [-1, 0, 3, 3]",
        f"error: {bad_3d}: 3D 'imgs' must have shape (D, H, W), got (2, 8, 8, 3)",
    ]
    err_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert sorted(err_lines) == sorted(expected_errors)
    assert sorted(p.name for p in outputs.iterdir()) == sorted(p.name for p in (good, no_boxes, no_spacing, ints))
    np.testing.assert_array_equal(_segs(outputs / no_boxes.name), np.zeros((256, 256), np.uint16))
    assert "2DBox_US_0002.npz" in out and "no boxes: wrote an all-zero mask" in out
    assert "no 'spacing'; not needed for inference, going on" in out
    assert "'imgs' converted from int32 to uint8" in out
    assert _segs(outputs / no_spacing.name)[1].max() == 1
    assert out.strip().splitlines()[-1].startswith("14 cases: 4 done, 10 failed, ")
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before  # inputs untouched


def test_clipped_boxes_are_reported_in_the_log_line(tmp_path, capsys, tiny_models):
    img = np.zeros((256, 256, 3), np.uint8)
    save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=img, boxes=np.array([[200, 10, 400, 30], [300, 300, 310, 310]]))
    code, out, _ = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("2DBox_US_0001.npz"))
    assert "box row(s) 1 lie outside the image: empty mask" in line
    assert "box row(s) 0 clipped to the image (256 x 256, x by y)" in line
    np.testing.assert_array_equal(_segs(tmp_path / "out" / "2DBox_US_0001.npz"),
                                  _painted((256, 256), np.array([[200, 10, 255, 30]])))


def test_an_unwritable_output_folder_is_one_error(tmp_path, capsys, tiny_models):
    save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=np.zeros((8, 8, 3), np.uint8), boxes=np.zeros((0, 4)))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, tmp_path / "in", blocker / "out", tiny_models)
    assert code == 1
    assert err.strip() == f"error: {blocker / 'out'}: output folder is not writable (Not a directory)"


def test_a_missing_model_folder_fails_only_its_cases_at_start(tmp_path, capsys, tiny_models):
    models = tmp_path / "models"
    models.mkdir()
    (models / "litemedsam").symlink_to(tiny_models / "litemedsam")
    img = np.zeros((64, 64, 3), np.uint8)
    save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=img, boxes=np.array([[1, 1, 9, 9]]))
    xray = save_case(tmp_path / "in", "2DBox_X-Ray_0001.npz", imgs=img, boxes=np.array([[1, 1, 9, 9]]))
    code, out, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", models)
    assert code == 1
    folder = models / "efficientsam_vitt"
    assert err.strip().splitlines()[0] == (
        f"error: {xray}: model folder {folder} not found (route 2D/X-Ray -> efficientsam_vitt (image)); "
        f"export it with `python -m train.export --arch efficientsam_vitt --checkpoint WEIGHTS --out {folder}`")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["2DBox_US_0001.npz"]


def test_unknown_modality_uses_the_default_route_with_a_warning(tmp_path, capsys, tiny_models):
    path = save_case(tmp_path / "in", "2DBox_Thermal_0001.npz", imgs=np.zeros((256, 256, 3), np.uint8),
                 boxes=np.array([[1, 1, 9, 9]]))
    code, out, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models)
    assert code == 0
    assert f"warning: {path}: unknown modality 'Thermal'; using the 2D default route -> litemedsam (image)" in err
    assert "2DBox_Thermal_0001.npz: 2D unknown modality -> litemedsam (image)" in out


def test_a_custom_routing_table(tmp_path, capsys, tiny_models):
    table = tmp_path / "routing.json"
    table.write_text('{"format_version": 1, "models": {"efficientsam_vitt": "efficientsam_vitt"}, '
                     '"propagation_margin": 0, "routes": ['
                     '{"dimension": "2D", "modality": "*", "model": "efficientsam_vitt", "strategy": "image"},'
                     '{"dimension": "3D", "modality": "*", "model": "efficientsam_vitt", "strategy": "axial"}]}')
    save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=np.zeros((64, 64, 3), np.uint8), boxes=np.array([[1, 1, 9, 9]]))
    code, out, _ = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models, "--routing", str(table))
    assert code == 0 and "2DBox_US_0001.npz: 2D US -> efficientsam_vitt (image)" in out


def test_bad_arguments_exit_2(tmp_path, capsys, tiny_models):
    code, _, err = run_cli(capsys, tmp_path / "absent", tmp_path / "out", tiny_models)
    assert (code, err.strip()) == (2, f"error: {tmp_path / 'absent'}: input folder not found")
    (tmp_path / "in").mkdir()
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models, "--routing", str(bad))
    assert (code, err.strip()) == (2, f"error: {bad}: must hold a JSON object")


def test_the_interactive_options_parse_and_refuse_bad_values(capsys):
    from infer.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["-i", "in", "-o", "out"])
    assert (args.click_edits, args.edit_reach, args.refine_rounds) == ("local", 3.0, 0)
    args = parser.parse_args(["-i", "in", "-o", "out", "--click-edits", "propagate", "--edit-reach", "0"])
    assert (args.click_edits, args.edit_reach) == ("propagate", 0.0)
    for bad, message in ((["--edit-reach", "-1"], "must be >= 0.0, got -1.0"),
                         (["--click-edits", "global"], "invalid choice: 'global'"),
                         (["--embedding-store-mib", "-5"], "must be >= 0, got -5")):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["-i", "in", "-o", "out", *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_cli_runs_with_torch_and_train_unimportable(tmp_path, tiny_models, backend):
    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 100, 100]])
    save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=img, boxes=boxes)
    save_case(tmp_path / "in", "3DBox_PET_0001.npz", imgs=np.zeros((4, 32, 32), np.uint8) + 50,
          boxes=np.array([[4, 4, 1, 9, 9, 2]]))
    blocker = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'train', 'torchvision'):\n"
        "            raise ImportError(f'blocked import of {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.argv = ['infer', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('infer', run_name='__main__', alter_sys=True)\n"
        "finally:\n"
        "    assert not any(m.split('.')[0] in ('torch', 'train') for m in sys.modules), 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", blocker, "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                           "--models", str(tiny_models), "--cache-dir", str(tmp_path / "cache"), "--backend", backend],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(_segs(tmp_path / "out" / "2DBox_US_0001.npz"), _painted((256, 256), boxes))
    assert (tmp_path / "out" / "3DBox_PET_0001.npz").is_file()


def test_only_the_models_a_case_needs_are_loaded(tmp_path, capsys, tiny_models):
    """An unusable X-ray model folder does not matter to a run without X-ray cases, and fails
    exactly the X-ray cases of a run that has them."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "litemedsam").symlink_to(tiny_models / "litemedsam")
    broken = models / "efficientsam_vitt"
    broken.mkdir()
    (broken / "model.json").write_text("{ not json")
    img = np.zeros((64, 64, 3), np.uint8)
    save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=img, boxes=np.array([[1, 1, 9, 9]]))
    assert run_cli(capsys, tmp_path / "in", tmp_path / "out", models)[0] == 0
    xrays = [save_case(tmp_path / "in", f"2DBox_X-Ray_000{i}.npz", imgs=img, boxes=np.array([[1, 1, 9, 9]]))
             for i in (1, 2)]
    code, _, err = run_cli(capsys, tmp_path / "in", tmp_path / "out2", models)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2
    for line, path in zip(errors, xrays):
        assert line.startswith(f"error: {path}: {broken / 'model.json'}: not valid JSON")
    assert [p.name for p in (tmp_path / "out2").iterdir()] == ["2DBox_US_0001.npz"]


def test_precision_is_a_choice_and_a_missing_int8_encoder_fails_the_case_by_name(tmp_path, capsys, tiny_models):
    box = np.array([[10, 10, 40, 40]])
    save_case(tmp_path / "in", "2DBox_US_0001.npz", imgs=np.full((64, 64, 3), 100, np.uint8), boxes=box)
    code, out, err = run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models, "--precision", "int8")
    assert code == 1
    assert "2DBox_US_0001.npz" in err and "no int8 encoder (model.json lists none under precisions.int8.files)" in err
    assert not (tmp_path / "out" / "2DBox_US_0001.npz").exists()
    with pytest.raises(SystemExit):
        run_cli(capsys, tmp_path / "in", tmp_path / "out", tiny_models, "--precision", "fp16")
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
