"""Datasets as pure logic: reading and checking (shared/datasets.py), and the split, standardizing and batch order
of the reproducibility contract (worker/dataset.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from shared import datasets
from shared.errors import BadInput, DecodeError
from shared.specs import parse_spec
from worker import dataset, network

CPU = torch.device("cpu")


def spec_for(d: datasets.Dataset, **fields):
    loss = {"loss": "ce"} if d.classes else {}
    return parse_spec({"kind": "train", "data": d.ref(), **loss, **fields})


def test_digits_are_1797_rows_of_64_inputs_and_10_classes() -> None:
    d = datasets.named("digits")
    assert d.x.shape == (1797, 64) and d.x.dtype == np.float32
    assert d.y.shape == (1797,) and d.y.dtype == np.int64 and d.classes == 10 and d.outputs == 10
    assert d.ref()["sha256"] == datasets.named("digits").sha256  # the same rows, the same bytes, the same hash


def test_equal_rows_from_any_source_have_one_hash(tmp_path: Path) -> None:
    x, y = np.arange(12, dtype=np.float32).reshape(4, 3), np.array([0, 1, 1, 0])
    np.savez(tmp_path / "a.npz", x=x, y=y)
    save_file({"x": x, "y": y}, str(tmp_path / "b.safetensors"))
    hashes = {datasets.load_file(tmp_path / "a.npz").sha256, datasets.load_file(tmp_path / "b.safetensors").sha256,
              datasets.of((x, y)).sha256, datasets.of({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}).sha256,
              datasets.of((x.astype(np.float64).tolist(), y.tolist())).sha256}
    assert len(hashes) == 1


def test_targets_keep_their_shape_and_one_dimensional_floats_are_one_target() -> None:
    d = datasets.checked(np.zeros((3, 2)), np.array([0.5, 1.5, 2.5]), "t")
    assert d.y.shape == (3, 1) and d.y.dtype == np.float32 and d.classes is None and d.outputs == 1


@pytest.mark.parametrize(("x", "y", "fragment"), [
    (np.zeros((3, 2)), np.zeros((3, 2, 2)), "y must be (rows, outputs)"),
    (np.zeros((1, 2)), np.zeros(1, dtype=np.int64), "at least 2 rows"),
    (np.array([[True, False], [False, True]]), np.zeros((2, 1)), "holds bool values"),
    (np.zeros((2, 2)), np.array([[np.inf], [0.0]]), "y holds nan or inf (row 0)"),
    (np.zeros((2, 2)), np.array([0, 0]), "one class only"),
    (np.zeros((2, 2)), np.array([0, 1 << 20]), "out of range"),
    ([[1, 2], [3]], np.zeros(2), "not a rectangular array"),
])
def test_bad_arrays_are_one_line(x, y, fragment: str) -> None:
    with pytest.raises(BadInput, match=None) as e:
        datasets.checked(x, y, "t")
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_data_and_dataset_together_are_refused() -> None:
    with pytest.raises(BadInput, match="not both"):
        datasets.resolve({"data": "a.npz", "dataset": "digits"})


def test_a_reference_passes_through_resolve_unread() -> None:
    ref = datasets.named("digits").ref()
    assert datasets.resolve({"kind": "train", "data": ref}) == ({"kind": "train", "data": ref}, None)


def test_bytes_that_do_not_match_their_hash_are_refused() -> None:
    d = datasets.named("digits")
    with pytest.raises(DecodeError, match="do not match their hash"):
        datasets.from_blob(d.blob[:-1] + bytes([d.blob[-1] ^ 1]), d.sha256)


def test_the_split_is_stratified_seeded_and_in_file_order() -> None:
    d = datasets.named("digits")
    spec = spec_for(d, val_fraction=0.25, seed=3)
    train, val = dataset.split(spec, d.y)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 1797
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    for c in range(10):  # every class held out by its own share, rounded half up
        n = int((d.y == c).sum())
        assert int((d.y[val] == c).sum()) == int(np.floor(n * 0.25 + 0.5))
    again, _ = dataset.split(spec, d.y)
    other, _ = dataset.split(spec_for(d, val_fraction=0.25, seed=4), d.y)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_standardizing_uses_the_training_split_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, (200, 4)).astype(np.float32)
    x[:, 3] = 7  # a constant input: divided by 1, not 0
    d = datasets.checked(x, rng.normal(size=(200, 2)), "t")
    spec = spec_for(d, val_fraction=0.3, standardize=True)
    train, val = dataset.prepare(spec, d.x, d.y, CPU, torch.float32)
    assert val is not None
    np.testing.assert_allclose(train.x.mean(0).numpy()[:3], 0, atol=1e-5)
    np.testing.assert_allclose(train.x.std(0, unbiased=False).numpy()[:3], 1, atol=1e-5)
    assert torch.equal(train.x[:, 3], torch.zeros(len(train.x)))
    assert abs(float(val.x.mean())) > 1e-4  # the held-out rows were not fitted


def test_one_hot_float_targets_train_as_their_class_ids() -> None:
    ids = np.array([0, 2, 1, 2, 0, 1])
    d = datasets.checked(np.arange(12.0).reshape(6, 2), np.eye(3)[ids], "t")
    train, _ = dataset.prepare(spec_for(d, loss="ce"), d.x, d.y, CPU, torch.float32)
    assert train.target is not None and train.target.tolist() == ids.tolist()


def test_each_epoch_visits_every_training_row_once_in_batches() -> None:
    order = dataset.BatchOrder(seed=1, rows=10, batch=4, device=CPU)
    assert order.per_epoch == 3
    for epoch in range(3):
        batches = [order(epoch * 3 + k) for k in range(3)]
        assert [len(b) for b in batches] == [4, 4, 2]
        assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert not torch.equal(torch.cat([order(k) for k in range(3)]), torch.cat([order(3 + k) for k in range(3)]))
    resumed = dataset.BatchOrder(seed=1, rows=10, batch=4, device=CPU)
    assert torch.equal(resumed(7), order(7))  # any iteration, from a fresh start: a resume's


def test_with_data_only_the_weights_are_drawn() -> None:
    """Given a dataset, draw takes w1 then w2 straight after seeding: torch.randn's first two draws."""
    d = datasets.named("digits")
    spec = spec_for(d, hidden_size=8, seed=11)
    data = network.draw(spec, CPU, (d.x, d.y))
    torch.manual_seed(11)
    assert torch.equal(data.w1, torch.randn(64, 8)) and torch.equal(data.w2, torch.randn(8, 10))
    assert data.order is None and data.val is None and len(data.x) == 1797


def test_the_loops_metrics_and_the_light_table_agree() -> None:
    """Every metric the loop measures has its direction in shared/metric_names.py, and every metric a spec can
    ask to be evaluated has a measure in the loop."""
    from shared import metric_names
    from worker import loop

    measured = {m.name for m in loop.METRICS if m.measure is not None}
    assert {m.name for m in loop.METRICS} == set(metric_names.KNOWN)
    d = datasets.named("digits")
    for fields in ({"loss": "ce", "val_fraction": 0.5}, {"loss": "sse", "val_fraction": 0.5}, {"loss": "ce"}):
        spec = parse_spec({"kind": "train", "data": {**d.ref(), "classes": None} if fields["loss"] == "sse"
                           else d.ref(), **fields})
        assert set(spec.evaluated) <= measured
    assert metric_names.higher_is_better("val_accuracy") and not metric_names.higher_is_better("val_loss")
