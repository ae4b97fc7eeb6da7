"""Overlay and summary pictures: sizes, what is drawn, case selection, failures."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from matplotlib.image import imread

from evaluation.overlay import draw_case, main, worst_cases
from evaluation.scoring import CaseResult


def colour_pixels(image, colour):
    """Pixels of an RGB(A) float image (or PNG path) that are clearly `colour` (antialiased lines
    blend with the grey background, so classify instead of matching exactly)."""
    rgb = imread(image)[..., :3] if not isinstance(image, np.ndarray) else image[..., :3]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    masks = {"green": (g > 0.55) & (r < 0.4) & (b < 0.4), "red": (r > 0.55) & (g < 0.4) & (b < 0.4),
             "yellow": (r > 0.55) & (g > 0.55) & (b < 0.35)}
    return int(np.count_nonzero(masks[colour]))


GREEN, RED, YELLOW = "green", "red", "yellow"


@pytest.fixture
def case_dirs(tmp_path):
    dirs = {name: tmp_path / name for name in ("imgs", "gts", "segs")}
    for folder in dirs.values():
        folder.mkdir()
    image = np.full((300, 200, 3), 60, np.uint8)
    gts = np.zeros((300, 200), np.uint8)
    gts[50:120, 40:150] = 1
    gts[200:260, 20:80] = 2
    np.savez(dirs["imgs"] / "2DBox_US_0001.npz", imgs=image, boxes=np.array([[35, 45, 154, 124], [15, 195, 84, 264]]))
    np.savez(dirs["gts"] / "2DBox_US_0001.npz", gts=gts)
    np.savez(dirs["segs"] / "2DBox_US_0001.npz", segs=np.roll(gts, 6, axis=1))
    volume = np.full((30, 64, 80), 90, np.uint8)
    gt3 = np.zeros(volume.shape, np.uint8)
    gt3[5:12, 10:30, 10:30], gt3[14:20, 30:50, 40:70], gt3[25:29, 5:20, 50:75] = 1, 2, 3
    boxes3 = np.array([[10, 10, 5, 29, 29, 11], [40, 30, 14, 69, 49, 19], [50, 5, 25, 74, 19, 28]])
    np.savez(dirs["imgs"] / "3DBox_CT_0002.npz", imgs=volume, boxes=boxes3, spacing=np.ones(3))
    np.savez(dirs["gts"] / "3DBox_CT_0002.npz", gts=gt3, spacing=np.ones(3))
    np.savez(dirs["segs"] / "3DBox_CT_0002.npz", segs=gt3)
    return dirs


def test_2d_overlay_size_and_content(case_dirs, tmp_path):
    out, size = draw_case("2DBox_US_0001.npz", case_dirs["imgs"], case_dirs["gts"], case_dirs["segs"], tmp_path / "o")
    assert size == (300, 200) and imread(out).shape[:2] == (300, 200)  # native size below --max-size
    assert colour_pixels(out, GREEN) > 100 and colour_pixels(out, RED) > 100 and colour_pixels(out, YELLOW) > 50
    out, size = draw_case("2DBox_US_0001.npz", case_dirs["imgs"], case_dirs["gts"], None, tmp_path / "o",
                          max_side=150)
    assert size == (150, 100) and imread(out).shape[:2] == (150, 100)
    assert colour_pixels(out, RED) == 0  # no prediction drawn when none is given


def test_3d_overlay_has_one_panel_per_object(case_dirs, tmp_path):
    out, size = draw_case("3DBox_CT_0002.npz", case_dirs["imgs"], case_dirs["gts"], case_dirs["segs"], tmp_path)
    assert size == (320, 1200)  # 3 panels of 64 x 80 slices enlarged to 320 x 400
    image = imread(out)
    assert image.shape[:2] == (320, 1200)
    for panel in range(3):  # each object's outline is on its own middle slice
        assert colour_pixels(image[:, panel * 400:(panel + 1) * 400], RED) > 100


def test_mismatched_prediction_is_an_error(case_dirs, tmp_path):
    np.savez(case_dirs["segs"] / "2DBox_US_0001.npz", segs=np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"^2DBox_US_0001.npz: segs shape \(10, 10\) does not match image shape \(300, 200\)$"):
        draw_case("2DBox_US_0001.npz", case_dirs["imgs"], case_dirs["gts"], case_dirs["segs"], tmp_path)


def test_worst_cases_per_modality():
    results = [CaseResult("a_CT_1.npz", "CT", "", 0.9, 0.9), CaseResult("a_CT_2.npz", "CT", "", 0.5, 0.5),
               CaseResult("a_CT_3.npz", "CT", "", math.nan, 0.0), CaseResult("a_US_1.npz", "US", "", 0.7, 0.7)]
    assert worst_cases(results, 2) == ["a_CT_2.npz", "a_CT_3.npz", "a_US_1.npz"]


def test_cli_draws_worst_cases_and_summary(case_dirs, tmp_path, capsys):
    metrics = tmp_path / "m.csv"
    metrics.write_text("case,dsc,nsd,modality,image_size,error\n2DBox_US_0001.npz,0.8,0.9,US,300x200,\n"
                       "3DBox_CT_0002.npz,1.0,1.0,CT,30x64x80,\n3DBox_CT_0009.npz,0.0,0.0,CT,1x1x1,missing\n")
    timing = tmp_path / "t.csv"
    timing.write_text("case,runs,time_mean_s,time_std_s,peak_memory_mib,status\n2DBox_US_0001.npz,1,0.5,0.0,100.0,ok\n")
    out = tmp_path / "pictures"
    code = main(["-i", str(case_dirs["imgs"]), "-g", str(case_dirs["gts"]), "-s", str(case_dirs["segs"]),
                 "-m", str(metrics), "-t", str(timing), "-o", str(out), "--worst", "1"])
    assert code == 1  # the worst CT case has no image
    assert "3DBox_CT_0009.npz" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.png")) == ["2DBox_US_0001.png", "summary.png"]
    assert imread(out / "summary.png").shape[:2] == (450, 1500)


def test_real_mammography_case_with_its_boxes(real_mammography_case, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    shutil.copy(real_mammography_case, imgs / real_mammography_case.name)
    out, size = draw_case(real_mammography_case.name, imgs, None, None, tmp_path / "o")
    assert size == (1600, round(1726 * 1600 / 2604)) and imread(out).shape[:2] == size
    assert colour_pixels(out, YELLOW) > 200  # the four box prompts
