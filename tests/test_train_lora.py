"""train.lora: per-head Q/V updates (not the channel slices of docs/reference_systems.md section 7 #19), merging, adapter files,
and a LoRA training run that changes nothing but the adapters."""
from __future__ import annotations

import hashlib

import torch

from tests._train_fixtures import TINY, make_cache, tiny, tiny_config  # noqa: F401 (tiny: fixture)
from train import lora as lora_cli
from train.checkpoint import load_weights
from train.engine import fit
from train.lora import QVLoRA, load_adapters, save_adapters
from train.models import build_model
from train.models.tiny_vit import WindowAttention


def _randomize(lora: QVLoRA, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _inputs(size: int = 64, n: int = 2):
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 3, size, size, generator=g), torch.tensor([[4.0, 6.0, 40.0, 50.0], [10.0, 2.0, 60.0, 30.0]])


def test_query_and_value_updates_land_in_each_heads_own_q_and_v_slices():
    torch.manual_seed(0)
    attn = WindowAttention(dim=12, num_heads=3, window=2)  # key_dim 4: per head [q0..3, k0..3, v0..3]
    lora = QVLoRA(attn, rank=2, alpha=4.0)  # scale 2
    _randomize(lora, 1)
    x = torch.randn(5, 12)
    base = attn.qkv(x)
    lora.attach(attn)
    delta = (attn.qkv(x) - base).view(5, 3, 3, 4)  # (tokens, head, q/k/v, key_dim), as WindowAttention splits it
    lora.detach()
    assert torch.equal(attn.qkv(x), base)
    q = (2 * x @ lora.a_q[0].T @ lora.b_q[0].T).view(5, 3, 4)
    v = (2 * x @ lora.a_v[0].T @ lora.b_v[0].T).view(5, 3, 4)
    torch.testing.assert_close(delta[:, :, 0], q, rtol=0, atol=1e-6)
    assert torch.count_nonzero(delta[:, :, 1]) == 0  # keys untouched (#19 wrote into k and v of other heads)
    torch.testing.assert_close(delta[:, :, 2], v, rtol=0, atol=1e-6)
    torch.testing.assert_close(lora.qkv_delta(0) @ x.T, (delta.reshape(5, 36)).T, rtol=0, atol=1e-6)
    assert QVLoRA(attn, rank=2).qkv_delta(0).abs().max() == 0  # B starts at zero: no change before training


def test_merged_checkpoint_computes_what_the_adapted_model_computes(tiny, tmp_path, capsys):
    torch.manual_seed(0)
    model = tiny.build().eval()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    lora = QVLoRA(model.image_encoder, rank=3)
    assert len(lora.targets) == 3  # one TinyViTBlock in each attention stage
    _randomize(lora, 2)
    image, boxes = _inputs()
    with torch.no_grad():
        plain_out = model(image, boxes)
        lora.attach(model.image_encoder)
        adapted = model(image, boxes)
    merged = lora.merged_state_dict(model)
    assert {k for k in merged if not torch.equal(merged[k], base_state[k])} == {
        f"image_encoder.{t}.qkv.weight" for t in lora.targets}
    fresh = tiny.build().eval()
    load_weights(fresh, merged)
    with torch.no_grad():
        again = fresh(image, boxes)
    for a, b in zip(adapted, again):
        torch.testing.assert_close(b, a, rtol=0, atol=2e-5)
    assert (adapted[0] - plain_out[0]).abs().max() > 1e-2  # the adapters do change the masks

    base_path, adapters = tmp_path / "base.pth", tmp_path / "adapters.pth"
    torch.save(base_state, base_path)
    sha = hashlib.sha256(base_path.read_bytes()).hexdigest()
    save_adapters(lora, adapters, TINY, {"checkpoint": "base.pth", "sha256": sha})
    assert adapters.stat().st_size < 100_000
    out = tmp_path / "merged.pth"
    assert lora_cli.main(["merge", "--arch", TINY, "--base", str(base_path), "--adapters", str(adapters),
                          "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"merged 3 adapted attention blocks (rank 3) into {out}"
    rebuilt = build_model(TINY, checkpoint=out)
    assert all(torch.equal(rebuilt.state_dict()[k], merged[k]) for k in merged)

    torch.save(merged, tmp_path / "other.pth")
    assert lora_cli.main(["merge", "--arch", TINY, "--base", str(tmp_path / "other.pth"), "--adapters",
                          str(adapters), "--out", str(tmp_path / "x.pth")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'other.pth'}: not the base these adapters were "
                                              f"trained on (base.pth, sha256 {sha[:12]}...)")


def test_lora_run_changes_only_the_adapters_and_its_checkpoint_is_the_merged_model(tiny, tmp_path):
    cache = make_cache(tmp_path)
    torch.manual_seed(11)
    initial = tiny.build().state_dict()
    torch.save(initial, tmp_path / "init.pth")
    result = fit(tiny_config(cache, tmp_path / "work", lora_rank=2, pretrained_checkpoint=str(tmp_path / "init.pth"),
                             lr=1e-2, num_epochs=1, max_steps=None))
    ckpt = torch.load(result.run_dir / "latest.pth", weights_only=True)
    qkv = {f"image_encoder.{t}.qkv.weight" for t in ckpt["lora"]["targets"]}
    assert len(qkv) == 3 and result.step == 2
    for key, value in ckpt["model"].items():  # BatchNorm buffers included: the frozen encoder stays in eval mode
        assert torch.equal(value, initial[key]) != (key in qkv), key
    assert all(torch.equal(ckpt["lora"]["base_qkv"][k], initial[k]) for k in qkv)
    assert all(ckpt["lora"]["adapters"][f"b_{w}.{i}"].abs().max() > 0 for w in "qv" for i in range(3))

    model = build_model(TINY, checkpoint=result.run_dir / "latest.pth")  # strict load of the merged weights
    base = tiny.build().eval()
    load_weights(base, initial)
    adapters, meta = load_adapters(result.run_dir / "latest_adapters.pth", base.image_encoder)
    assert meta["base"] == {"checkpoint": "init.pth",
                            "sha256": hashlib.sha256((tmp_path / "init.pth").read_bytes()).hexdigest()}
    adapters.attach(base.image_encoder)
    image, boxes = _inputs()
    with torch.no_grad():
        for a, b in zip(base(image, boxes), model(image, boxes)):
            torch.testing.assert_close(b, a, rtol=0, atol=2e-5)
