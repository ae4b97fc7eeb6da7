"""The on-disk embedding store of interactive cases (infer.embedding_store): a later step of the
same case reads the slices an earlier step encoded and gives the same masks; stale stores (another
case, another model) are removed, the budget bounds it, a damaged file is encoded again, and the
last click step removes it."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from _infer_fakes import fake_model

from challenge.interactive import ClassBox, ClassClicks, write_interactive_case
from infer.embedding_store import STORE_DIR, EmbeddingStore, model_fingerprint
from infer.interactive import CLICK_STEPS, InteractiveOptions
from infer.models import LoadedModel
from infer.pipeline import run_case
from infer.predictor import SlicePredictor
from infer.routing import Route

SHAPE = (12, 64, 64)
BOX = ClassBox(z_min=2, z_max=9, z_mid=5, z_mid_x_min=20, z_mid_y_min=16, z_mid_x_max=44, z_mid_y_max=40)
ROUTE = Route("3D", "CT", "fake", "axial_iou")
EMBEDDING_BYTES = 256 * 64 * 64 * 4


def _volume() -> np.ndarray:
    truth = np.zeros(SHAPE, bool)
    truth[2:10, 16:41, 20:45] = True
    volume = np.where(truth, 220, 20).astype(np.uint8)
    volume[np.arange(SHAPE[0]), 0, np.arange(SHAPE[0])] = 0  # no two slices alike: keys hash the pixels
    return volume


class _Pool:
    """``ModelPool.get`` over one fake model."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    def get(self, name: str) -> LoadedModel:
        return self.model


def _step(tmp_path: Path, name: str, clicks_order: list[list[str]] | None, model: LoadedModel,
          options: InteractiveOptions = InteractiveOptions()):
    """Run one step of case ``name`` (the box step when ``clicks_order`` is None) into tmp/out."""
    volume = _volume()
    inputs = tmp_path / "in"
    inputs.mkdir(parents=True, exist_ok=True)
    (tmp_path / "out").mkdir(exist_ok=True)
    members = {}
    if clicks_order is not None:
        fg = np.array([[5 + k % 3, 28, 32] for k in range(len(clicks_order[0]))])
        members = dict(clicks=[ClassClicks(fg, np.zeros((0, 3), np.int64))], clicks_order=clicks_order,
                       prev_pred=(volume > 100).astype(np.uint8))
    path = inputs / name
    write_interactive_case(path, volume, (1.0, 1.0, 1.0), boxes=[BOX], **members)
    result = run_case(path, ROUTE, _Pool(model), tmp_path / "out", 3.0, interactive=options)  # type: ignore[arg-type]
    assert result.ok, result.error
    return result, np.load(tmp_path / "out" / name)["segs"]


def test_a_later_step_reads_the_stored_slices_and_gives_the_same_masks(tmp_path):
    model = fake_model(points=True)
    first, segs = _step(tmp_path, "3DBox_CT_0001.npz", None, model)
    encoded = model.encoder.calls
    assert encoded == first.stats.encoder_calls == 8  # slices 2..9
    store = tmp_path / "out" / STORE_DIR / "3DBox_CT_0001"
    assert len(list(store.glob("*.npy"))) == 8 and (store / "model.txt").read_text() == model_fingerprint(model)

    again, segs_again = _step(tmp_path, "3DBox_CT_0001.npz", None, model)
    assert model.encoder.calls == encoded and again.stats.stored_embeddings == 8
    assert "8 stored embeddings read" in again.notes
    np.testing.assert_array_equal(segs_again, segs)

    plain = fake_model(points=True)
    clicked, clicked_segs = _step(tmp_path, "3DBox_CT_0001.npz", [["fg"]], model)
    _, unstored_segs = _step(tmp_path / "nostore", "3DBox_CT_0001.npz", [["fg"]], plain,
                             InteractiveOptions(store_bytes=0))
    assert clicked.stats.encoder_calls == 0 and clicked.stats.stored_embeddings > 0 and plain.encoder.calls > 0
    np.testing.assert_array_equal(clicked_segs, unstored_segs)
    assert not (tmp_path / "nostore" / "out" / STORE_DIR).exists()


def test_the_last_click_step_removes_the_store(tmp_path):
    model = fake_model(points=True)
    _step(tmp_path, "3DBox_CT_0001.npz", None, model)
    _step(tmp_path, "3DBox_CT_0001.npz", [["fg"] * (CLICK_STEPS - 1)], model)
    assert (tmp_path / "out" / STORE_DIR / "3DBox_CT_0001").is_dir()
    _step(tmp_path, "3DBox_CT_0001.npz", [["fg"] * CLICK_STEPS], model)
    assert not (tmp_path / "out" / STORE_DIR).exists() and (tmp_path / "out" / "3DBox_CT_0001.npz").is_file()


def test_another_case_or_another_model_makes_a_store_stale(tmp_path):
    root = tmp_path / STORE_DIR
    embedding = np.ones((1, 256, 64, 64), np.float32)
    first = EmbeddingStore.open(root, "case_a", "model-1")
    first.save("k", embedding)
    np.testing.assert_array_equal(EmbeddingStore.open(root, "case_a", "model-1").load("k"), embedding)
    assert EmbeddingStore.open(root, "case_a", "model-2").load("k") is None  # another model: wiped
    EmbeddingStore.open(root, "case_a", "model-2").save("k", embedding)
    EmbeddingStore.open(root, "case_b", "model-2")
    assert sorted(p.name for p in root.iterdir()) == ["case_b"]  # the evaluator runs one case at a time


def test_the_budget_bounds_the_store_and_a_damaged_file_is_encoded_again(tmp_path):
    store = EmbeddingStore.open(tmp_path, "case", "m", budget_bytes=EMBEDDING_BYTES + 200)
    embedding = np.zeros((1, 256, 64, 64), np.float32)
    store.save("a", embedding)
    store.save("b", embedding)  # over the budget: not stored
    assert [p.name for p in sorted(store.folder.glob("*.npy"))] == ["a.npy"]
    assert EmbeddingStore.open(tmp_path, "case", "m").used == (store.folder / "a.npy").stat().st_size

    (store.folder / "a.npy").write_bytes((store.folder / "a.npy").read_bytes()[:1000])
    assert store.load("a") is None
    np.save(store.folder / "c.npy", np.zeros((3, 3), np.float64))
    assert store.load("c") is None  # not an embedding

    model = fake_model()
    volume = _volume()
    predictor = SlicePredictor(model, store=EmbeddingStore.open(tmp_path, "case", "m"))
    (predictor.store.folder / f"{EmbeddingStore.key(volume[3])}.npy").write_bytes(b"\x93NUMPY garbage")
    predictor.set_image(volume[3])
    assert model.encoder.calls == 1 and predictor.stats.stored_embeddings == 0


def test_keys_depend_on_the_pixels_and_the_layout():
    image = np.arange(64 * 48, dtype=np.uint8).reshape(64, 48)
    changed = image.copy()
    changed[10, 10] += 1
    keys = {EmbeddingStore.key(image), EmbeddingStore.key(changed), EmbeddingStore.key(image.reshape(48, 64)),
            EmbeddingStore.key(image.astype(np.uint16))}
    assert len(keys) == 4 and EmbeddingStore.key(image.copy()) == EmbeddingStore.key(image)


def test_the_fingerprint_follows_the_precision_and_the_sidecar():
    model = fake_model()
    assert model_fingerprint(model) == model_fingerprint(fake_model())
    assert model_fingerprint(replace(model, precision="bf16")) != model_fingerprint(model)
    assert model_fingerprint(replace(model, spec=replace(model.spec, raw={"x": 1}))) != model_fingerprint(model)


def test_a_store_that_cannot_be_made_costs_only_the_saving(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / STORE_DIR).write_text("a file where the store's folder would go")
    result, segs = _step(tmp_path, "3DBox_CT_0001.npz", None, fake_model(points=True))
    assert result.stats.encoder_calls == 8 and segs.shape == SHAPE
    assert any(note.startswith("no embedding store (") for note in result.notes)
