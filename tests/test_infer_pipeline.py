"""One case through infer.pipeline with fake models: failures cost one case and leave no file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from _infer_fakes import fake_model

from infer.models import LoadedModel
from infer.pipeline import run_case, write_segs
from infer.routing import Route

ROUTE_2D = Route("2D", "*", "fake", "image")


class _Pool:
    """Stands in for ModelPool: hands out one model."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    def get(self, name: str) -> LoadedModel:
        return self.model


class _Exploding:
    def run(self, feeds):
        raise RuntimeError("Exception from src/plugin.cpp:1:\nsomething broke\n")


def _case(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "2DBox_US_0001.npz"
    np.savez_compressed(path, imgs=np.full((40, 50, 3), 200, np.uint8), boxes=np.array([[5, 5, 30, 20]]))
    return path


def test_a_good_case_is_written_with_counts(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = run_case(_case(tmp_path / "in"), ROUTE_2D, _Pool(fake_model()), out, margin=3)
    assert result.ok and result.error is None
    assert (result.stats.encoder_calls, result.stats.decoder_calls, result.stats.decoded_boxes) == (1, 1, 1)
    assert result.shape == (40, 50, 3) and result.stats.first_encoder_time is not None
    assert [p.name for p in out.iterdir()] == ["2DBox_US_0001.npz"]


def test_a_runtime_failure_is_one_line_and_leaves_no_file(tmp_path):
    good = fake_model()
    broken = LoadedModel(good.spec, _Exploding(), good.decoder)
    out = tmp_path / "out"
    out.mkdir()
    path = _case(tmp_path / "in")
    result = run_case(path, ROUTE_2D, _Pool(broken), out, margin=3)
    assert not result.ok
    assert result.error == f"{path}: Exception from src/plugin.cpp:1: something broke"
    assert list(out.iterdir()) == []


def test_an_output_that_cannot_be_written_is_a_case_error_without_leftovers(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "2DBox_US_0001.npz").mkdir()  # a folder where the file should go: os.replace fails
    path = _case(tmp_path / "in")
    result = run_case(path, ROUTE_2D, _Pool(fake_model()), out, margin=3)
    assert not result.ok and result.error.startswith(f"{out / '2DBox_US_0001.npz'}: cannot write the output (")
    assert [p.name for p in out.iterdir()] == ["2DBox_US_0001.npz"]  # just the blocking folder, no temp file


def test_written_file_is_what_np_savez_compressed_writes(tmp_path):
    segs = np.random.default_rng(0).integers(0, 400, (30, 20), dtype=np.uint16)
    write_segs(tmp_path / "a.npz", segs)
    np.savez_compressed(tmp_path / "b.npz", segs=segs)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz", allow_pickle=False) as archive:
        assert archive.files == ["segs"]
        np.testing.assert_array_equal(archive["segs"], segs)
