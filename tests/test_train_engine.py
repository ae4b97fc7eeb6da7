"""train.engine and the one-GPU CLI: learning, exact resume, checkpoints that load and export,
frozen parts that stay frozen, flag aliases and configuration rules."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from tests._train_fixtures import TINY, make_cache, tiny, tiny_config  # noqa: F401 (tiny: fixture)
from train import engine
from train import export as export_cli
from train import train_one_gpu
from train.config import TrainConfig, build_parser, config_from_argv, resolve_config
from train.checkpoint import CheckpointError
from train.distributed import DistContext
from train.engine import fit, lr_factor
from train.models import ARCHITECTURES, build_model
from train.runlog import read_log


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("train"))


def _rows(run_dir, kind="step"):
    return [r for r in read_log(run_dir / "log.csv") if r["kind"] == kind]


def test_short_run_lowers_the_loss_and_raises_training_dice(tiny, cache, tmp_path):
    # Four 2D images, no augmentation: the loop must fit them; 2 epochs of 10 steps, fixed seed.
    config = tiny_config(cache, tmp_path, modalities=["Dermoscopy", "Fundus"], val_fraction=0.0, flip=False,
                         max_shift=0, box_margin=0, samples_per_epoch=40)
    result = fit(config)
    first, last = _rows(result.run_dir, "epoch")
    assert result.step == 20 and len(_rows(result.run_dir)) == 20
    assert last["loss"] < 0.85 * first["loss"], (first, last)
    assert last["dice"] > first["dice"] + 0.15, (first, last)
    assert first["val_dice"] is None and result.best_metric == last["dice"]  # no held-out file: training Dice
    assert (result.run_dir / "loss.png").stat().st_size > 10_000


def test_interrupted_and_resumed_runs_reproduce_the_uninterrupted_run_exactly(tiny, cache, tmp_path, monkeypatch):
    base = dict(num_epochs=3, samples_per_epoch=8, batch_size=4)  # 2 steps per epoch, 6 in all
    whole = fit(tiny_config(cache, tmp_path / "a", **base))

    # Stop mid-epoch 2 (after step 3, saved by max_steps), resume; crash after step 5, which was logged but
    # never saved (latest.pth is from step 4's epoch end); resume again to the end.
    cut = fit(tiny_config(cache, tmp_path / "b", max_steps=3, **base))
    assert (cut.step, cut.epochs_done, cut.stopped_early) == (3, 1, True)
    original_append = engine.RunLog.append

    def crash_after_step_5(self, **row):
        original_append(self, **row)
        if row["kind"] == "step" and row["step"] == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine.RunLog, "append", crash_after_step_5)
    with pytest.raises(KeyboardInterrupt):
        fit(resolve_config({"resume": str(cut.run_dir / "latest.pth")},
                           torch.load(cut.run_dir / "latest.pth", weights_only=True)["config"]))
    assert [r["step"] for r in _rows(cut.run_dir)][-1] == 5
    monkeypatch.setattr(engine.RunLog, "append", original_append)
    assert train_one_gpu.main(["-resume", str(cut.run_dir)]) == 0

    assert [r["loss"] for r in _rows(cut.run_dir)] == [r["loss"] for r in _rows(whole.run_dir)]
    assert [r["step"] for r in _rows(cut.run_dir)] == list(range(1, 7))
    strip = ("samples_per_s", "seconds")
    assert ([{k: v for k, v in r.items() if k not in strip} for r in _rows(cut.run_dir, "epoch")]
            == [{k: v for k, v in r.items() if k not in strip} for r in _rows(whole.run_dir, "epoch")])
    a = torch.load(whole.run_dir / "latest.pth", weights_only=True)
    b = torch.load(cut.run_dir / "latest.pth", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["metrics"] == b["metrics"] and (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (3, 6)
    with pytest.raises(CheckpointError, match=r"took global batches of 4 \(4 x 1 processes\); resuming with 2 "
                                              r"process\(es\) would take 8: resume with 1 process\(es\)$"):
        fit(resolve_config({"resume": str(cut.run_dir / "latest.pth")}, b["config"]), DistContext(0, 2, 0))


def test_checkpoint_loads_strictly_with_weights_only_and_exports(tiny, cache, tmp_path, capsys):
    argv = ["-data_root", str(cache), "-work_dir", str(tmp_path), "--run-name", "r", "--arch", TINY,
            "-batch_size", "4", "-num_workers", "0", "-num_epochs", "1", "--samples-per-epoch", "8",
            "--val-samples", "8", "-lr", "1e-3"]
    assert train_one_gpu.main(argv) == 0
    run = tmp_path / "r"
    assert sorted(p.name for p in run.iterdir()) == ["best.pth", "config.json", "latest.pth", "log.csv", "loss.png"]
    ckpt = torch.load(run / "best.pth", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "step", "rng", "config"} <= ckpt.keys()
    model = build_model(TINY, checkpoint=run / "best.pth")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt["model"].items())
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["config"] == ckpt["config"] and recorded["config"]["lr"] == 1e-3
    # The multimask tokens' hypernetworks (a single-mask model never multiplies them out) and the
    # point and mask prompt embeddings.
    unused_hypernetworks = [f"mask_decoder.output_hypernetworks_mlps.{t}.layers.{i}.{kind}"
                            for t in (1, 2, 3) for i in range(3) for kind in ("bias", "weight")]
    assert recorded["run"]["steps_per_epoch"] == 2 and recorded["run"]["unreachable_parameters"] == unused_hypernetworks + [
        "prompt_encoder.mask_downscaling.0.bias", "prompt_encoder.mask_downscaling.0.weight",
        "prompt_encoder.mask_downscaling.1.bias", "prompt_encoder.mask_downscaling.1.weight",
        "prompt_encoder.mask_downscaling.3.bias", "prompt_encoder.mask_downscaling.3.weight",
        "prompt_encoder.mask_downscaling.4.bias", "prompt_encoder.mask_downscaling.4.weight",
        "prompt_encoder.mask_downscaling.6.bias", "prompt_encoder.mask_downscaling.6.weight",
        "prompt_encoder.not_a_point_embed.weight", "prompt_encoder.point_embeddings.0.weight",
        "prompt_encoder.point_embeddings.1.weight"]
    out = tmp_path / "models" / "tiny"
    assert export_cli.main(["--checkpoint", str(run / "best.pth"), "--out", str(out)]) == 0  # --arch from the run
    sidecar = json.loads((out / "model.json").read_text())
    assert sidecar["source"]["checkpoint"] == "best.pth" and sidecar["arch"] == TINY
    assert export_cli.main(["--arch", "litemedsam", "--checkpoint", str(run / "best.pth"), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"error: --arch litemedsam but {run / 'best.pth'} was trained as {TINY}"
    plain = tmp_path / "plain.pth"
    torch.save(ckpt["model"], plain)
    assert export_cli.main(["--checkpoint", str(plain), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"error: --arch is needed: {plain} records no architecture"
    assert train_one_gpu.main(argv) == 1
    assert capsys.readouterr().err.strip() == f"error: {run}: run folder exists; pick another --run-name or -resume it"


def test_frozen_encoder_keeps_every_encoder_tensor_including_batchnorm_statistics(tiny, cache, tmp_path):
    torch.manual_seed(4)
    torch.save(tiny.build().state_dict(), tmp_path / "init.pth")
    initial = torch.load(tmp_path / "init.pth", weights_only=True)
    result = fit(tiny_config(cache, tmp_path, freeze_encoder=True, num_epochs=1,
                             pretrained_checkpoint=str(tmp_path / "init.pth")))
    trained = torch.load(result.run_dir / "latest.pth", weights_only=True)["model"]
    changed = {k for k in initial if not torch.equal(initial[k], trained[k])}
    assert changed and all(k.startswith(("mask_decoder.", "prompt_encoder.")) for k in changed)
    assert not any(k.startswith("prompt_encoder.mask_downscaling") for k in changed)  # unreachable: frozen


def test_public_flag_names_and_kebab_case_give_the_same_config(tiny, tmp_path):
    public = ["-data_root", "C", "-pretrained_checkpoint", "p.pth", "-work_dir", "W", "-batch_size", "3",
              "-num_workers", "1", "-num_epochs", "7", "-lr", "2e-4", "-bbox_shift", "9"]
    kebab = ["--data-root", "C", "--pretrained-checkpoint", "p.pth", "--work-dir", "W", "--batch-size", "3",
             "--num-workers", "1", "--num-epochs", "7", "--lr", "2e-4", "--box-margin", "9"]
    a, b = config_from_argv(public, "t", ""), config_from_argv(kebab, "t", "")
    assert config_from_argv(["--data-root", "C"], "t", "").work_dir == "runs"  # never work_dir/, the image's models
    assert a == b == TrainConfig(data_root="C", pretrained_checkpoint="p.pth", work_dir="W", batch_size=3,
                                 num_workers=1, num_epochs=7, lr=2e-4, box_margin=9)
    extra = config_from_argv(["--data-root", "C", "--arch", TINY, "--freeze-encoder", "--modalities", "PET",
                              "Microscopy", "--val-fraction", "0.2", "--seed", "5", "--device", "cpu",
                              "--no-flip"], "t", "")
    assert (extra.arch, extra.freeze_encoder, extra.modalities, extra.val_fraction, extra.seed, extra.device,
            extra.flip) == (TINY, True, ["PET", "Microscopy"], 0.2, 5, "cpu", False)
    assert vars(build_parser("t", "").parse_args(["--lora-rank", "4"])) == {"lora_rank": 4}  # only what was given
    (tmp_path / "c.json").write_text(json.dumps({"data_root": "C", "batch_size": 2, "lr": 1e-3}))
    assert config_from_argv(["--config", str(tmp_path / "c.json"), "--lr", "5e-4"], "t", "").lr == 5e-4


def test_configuration_errors_name_the_offending_values(tiny, cache, tmp_path):
    with pytest.raises(ValueError, match=r"^batch_size must be >= 1, got 0$"):
        TrainConfig(data_root="C", batch_size=0)
    with pytest.raises(ValueError, match=r"^lora_rank > 0 already freezes the whole base model"):
        TrainConfig(data_root="C", lora_rank=4, freeze_encoder=True)
    with pytest.raises(ValueError, match=r"^unknown architecture 'sam'; choose one of litemedsam, "):
        TrainConfig(data_root="C", arch="sam")
    saved = tiny_config(cache, tmp_path).to_json()
    with pytest.raises(ValueError, match=r"^a resumed run keeps its configuration; cannot change batch_size 4 -> 8, "
                                         r"lr 0\.003 -> 0\.1 \(changeable: "):
        resolve_config({"resume": "x", "batch_size": 8, "lr": 0.1, "num_epochs": 9}, saved)
    assert resolve_config({"resume": "x", "num_epochs": 9}, saved).num_epochs == 9
    with pytest.raises(ValueError, match=r"^sync_bn needs several CUDA processes"):
        fit(tiny_config(cache, tmp_path, sync_bn=True))
    with pytest.raises(ValueError, match=r"^modality 'Retina' not in the cache .* \(it has CT, Dermoscopy, "):
        fit(tiny_config(cache, tmp_path, modalities=["Retina"]))
    with pytest.raises(ValueError, match=r"^device 'cuda' requested but CUDA is not available"):
        fit(tiny_config(cache, tmp_path, device="cuda"))
    with pytest.raises(ValueError, match=r"cache: prepared for 64 px .* but litemedsam expects .*; "
                                         r"prepare again with --arch litemedsam$"):
        fit(tiny_config(cache, tmp_path, arch="litemedsam"))


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    factors = [lr_factor(s, warmup=4, total=14, floor=0.1) for s in range(15)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[9] == pytest.approx(0.1 + 0.9 * 0.5) and factors[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))
    assert lr_factor(20, 4, 14, 0.1) == pytest.approx(0.1) and not math.isnan(lr_factor(0, 0, 1, 0.0))


def test_k_objects_per_image_encode_each_image_once_and_decode_k_boxes(tiny, cache, tmp_path, monkeypatch):
    calls: list[tuple[str, bool, torch.Tensor, int]] = []  # (module, training, its embeddings, boxes)

    def counting_build():
        model = tiny.build()
        model.image_encoder.register_forward_hook(
            lambda m, args, out: calls.append(("enc", m.training, out, 0)))
        model.mask_decoder.register_forward_hook(
            lambda m, args, out: calls.append(("dec", m.training, args[0], args[2].shape[0])))
        return model

    monkeypatch.setitem(ARCHITECTURES, TINY, dataclasses.replace(tiny, build=counting_build))
    result = fit(tiny_config(cache, tmp_path, objects_per_image=3, num_epochs=1, samples_per_epoch=8))
    train = [c for c in calls if c[1]]
    assert [c[0] for c in train] == ["enc", "dec"] * 2  # 2 steps: one encoder pass each
    for (_, _, embeddings, _), (_, _, decoded, boxes) in zip(train[::2], train[1::2]):
        assert embeddings.shape[0] == 4 and boxes == 12  # the batch's 4 images once, 3 boxes per image
        assert torch.equal(decoded, embeddings.repeat_interleave(3, dim=0))
    evaluated = [c for c in calls if c[0] == "dec" and not c[1]]
    assert any(c[3] == 4 for c in evaluated)  # validation batches of 4 ...
    assert all(c[2].shape[0] == c[3] for c in evaluated)  # ... with one box per image
    assert json.loads((result.run_dir / "config.json").read_text())["config"]["objects_per_image"] == 3


def test_a_resumed_k_object_run_reproduces_the_uninterrupted_run(tiny, cache, tmp_path, capsys):
    base = dict(num_epochs=2, samples_per_epoch=8, batch_size=4, objects_per_image=3)  # 4 steps
    whole = fit(tiny_config(cache, tmp_path / "a", **base))
    cut = fit(tiny_config(cache, tmp_path / "b", max_steps=3, **base))
    assert cut.stopped_early and train_one_gpu.main(["-resume", str(cut.run_dir)]) == 0
    assert [r["loss"] for r in _rows(cut.run_dir)] == [r["loss"] for r in _rows(whole.run_dir)]
    a = torch.load(whole.run_dir / "latest.pth", weights_only=True)["model"]
    b = torch.load(cut.run_dir / "latest.pth", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert train_one_gpu.main(["-resume", str(cut.run_dir), "--objects-per-image", "1"]) == 1
    assert capsys.readouterr().err.startswith(
        "error: a resumed run keeps its configuration; cannot change objects_per_image 3 -> 1 (changeable: ")


def test_objects_per_image_flag_and_checkpoints_older_than_the_option(tmp_path):
    assert config_from_argv(["--data-root", "C", "--objects-per-image", "5"], "t", "").objects_per_image == 5
    with pytest.raises(ValueError, match=r"^objects_per_image must be >= 1, got 0$"):
        TrainConfig(data_root="C", objects_per_image=0)
    older = TrainConfig(data_root="C").to_json()
    del older["objects_per_image"]  # saved before the option existed: that run drew one object
    assert resolve_config({"resume": "x", "objects_per_image": 1}, older).objects_per_image == 1
    with pytest.raises(ValueError, match=r"cannot change objects_per_image 1 -> 2 "):
        resolve_config({"resume": "x", "objects_per_image": 2}, older)


def test_click_prompts_train_the_point_and_mask_prompt_paths(tiny, cache, tmp_path, monkeypatch):
    """--click-prompts 2: each step decodes the box and two rounds of simulated clicks (three
    times the objects in the loss), and the point embeddings, frozen in box training, learn."""
    seen = []
    real = engine.segmentation_loss
    monkeypatch.setattr(engine, "segmentation_loss", lambda m, i, t, w: seen.append((len(m), len(t))) or real(m, i, t, w))
    config = tiny_config(cache, tmp_path, modalities=["Dermoscopy", "Fundus"], val_fraction=0.0, flip=False,
                         max_shift=0, box_margin=0, samples_per_epoch=8, batch_size=4, click_prompts=2)
    engine._seed_everything(config.seed)  # fit builds its model right after this
    before = ARCHITECTURES[config.arch].build().prompt_encoder.point_embeddings[1].weight.detach().clone()
    result = fit(config)
    assert seen and all(masks == target == 3 * 4 for masks, target in seen)
    state = torch.load(result.run_dir / "latest.pth", weights_only=True)["model"]
    assert not torch.equal(state["prompt_encoder.point_embeddings.1.weight"], before)
