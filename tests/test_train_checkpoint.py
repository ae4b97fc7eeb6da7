"""train.train_checkpoint: the one place that writes and reads training checkpoints."""
from __future__ import annotations

import pytest
import torch

from train.checkpoint import CheckpointError
from train.train_checkpoint import FORMAT, VERSION, TrainCheckpoint, read_saved_config, recorded_arch


def _checkpoint(lora: dict | None = None) -> TrainCheckpoint:
    return TrainCheckpoint(model={"w": torch.arange(4.0)}, optimizer={"state": {}}, scheduler={"last_epoch": 3},
                           scaler={}, epoch=1, step=3, rng={"torch": torch.get_rng_state()},
                           config={"arch": "tiny_test", "lr": 1e-3}, metrics={"best": 0.5}, run={"world_size": 1},
                           lora=lora)


def test_saved_file_is_plain_weights_only_data_and_loads_back(tmp_path):
    path = tmp_path / "latest.pth"
    _checkpoint().save(path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == VERSION and "lora" not in raw
    back = TrainCheckpoint.load(path)
    assert torch.equal(back.model["w"], torch.arange(4.0)) and back.step == 3 and back.lora is None
    assert back.arch == "tiny_test" and recorded_arch(path) == "tiny_test"
    assert read_saved_config(path) == {"arch": "tiny_test", "lr": 1e-3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pth"]  # no temporary file left

    _checkpoint(lora={"rank": 2}).save(path)
    assert TrainCheckpoint.load(path).lora == {"rank": 2}


def test_files_that_are_not_training_checkpoints_are_refused_by_name(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"w": torch.zeros(1)}, plain)
    assert recorded_arch(plain) is None
    with pytest.raises(CheckpointError, match=r"plain\.pth: not a resumable training checkpoint \(missing model, "):
        TrainCheckpoint.load(plain)
    with pytest.raises(CheckpointError, match=r"plain\.pth: not a training checkpoint of this package"):
        read_saved_config(plain)
    older = tmp_path / "older.pth"  # written before "run" was recorded
    data = {k: v for k, v in torch.load(_saved(tmp_path), weights_only=True).items() if k != "run"}
    torch.save(data, older)
    assert TrainCheckpoint.load(older).run == {}


def _saved(folder):
    path = folder / "full.pth"
    _checkpoint().save(path)
    return path
