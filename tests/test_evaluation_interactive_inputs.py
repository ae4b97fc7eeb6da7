"""2024-format labelled cases -> CVPR 2025 interactive inputs: labels relabelled 1..N, one box each."""
from __future__ import annotations

import numpy as np
from _infer_fakes import save_case

from challenge.interactive import read_interactive_case
from evaluation.interactive_inputs import convert_case


def test_labels_become_one_to_n_in_ascending_order_and_each_gets_a_box(tmp_path):
    gts = np.zeros((40, 50), np.uint16)
    gts[5:15, 5:20] = 7
    gts[20:30, 25:45] = 3
    img = save_case(tmp_path / "imgs", "2DBox_US_0001.npz", imgs=np.full((40, 50, 3), 90, np.uint8),
                    boxes=np.array([[5, 5, 19, 14]]))
    gt = save_case(tmp_path / "gts", "2DBox_US_0001.npz", gts=gts)
    for part in ("imgs", "gts"):
        (tmp_path / "out" / part).mkdir(parents=True)
    convert_case(img, gt, tmp_path / "out", None)
    with np.load(tmp_path / "out" / "gts" / "2DBox_US_0001.npz") as data:
        out = data["gts"]
    assert out.shape == (1, 40, 50)
    assert out[0, 25, 30] == 1 and out[0, 10, 10] == 2 and out[0, 0, 0] == 0  # 3 -> 1, 7 -> 2
    case = read_interactive_case(tmp_path / "out" / "imgs" / "2DBox_US_0001.npz")
    assert case.imgs.shape == (1, 40, 50)
    assert [(b.z_mid_x_min, b.z_mid_y_min, b.z_mid_x_max, b.z_mid_y_max) for b in case.boxes] == [(25, 20, 44, 29), (5, 5, 19, 14)]
