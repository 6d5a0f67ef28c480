"""A training job's dataset on the worker: fetched once per job start, split, standardized, batched.

The reproducibility contract with a dataset (README, "Training on your data"), all from the job's seed S:
  1. the weights: torch.manual_seed(S), then w1 = torch.randn(inputs, hidden), w2 = torch.randn(hidden, outputs),
     float32 on the CPU (as without data, less the x and y draws);
  2. the split: numpy's default_rng([S, 0]); for class ids, class by class in increasing order, a permutation of
     that class's rows (in file order) whose first round(n_class * F) are held out; else one permutation of all
     rows whose first round(N * F) are held out. Both sides keep file order;
  3. standardizing: each input minus the training split's mean, over its std (1 where the std is 0);
  4. the mini-batches: epoch e's order is default_rng([S, 1, e]).permutation(training rows); iteration t takes
     batch t mod k of epoch t // k, k = ceil(training rows / B) (the last batch of an epoch may be smaller).
Nothing here draws from torch's global RNG after the weights, so a resumed job continues exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from shared import datasets
from shared.errors import JobFailed
from shared.specs import DataRef, TrainSpec
from shared.store import JobStore
from shared.vocab import Loss

SPLIT, ORDER = 0, 1  # the streams of numpy's default_rng([seed, stream, ...])


@dataclass
class Rows:
    x: torch.Tensor  # (N, I)
    y: torch.Tensor  # (N, O): float targets, or the one-hot of `target`
    target: torch.Tensor | None  # (N,) class ids, for --loss ce


def fetch(store: JobStore, ref: DataRef) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's (x, y), read from the broker once and checked against its hash."""
    blob = store.blobs.get_dataset(ref.sha256)
    if blob is None:
        raise JobFailed(f"dataset {ref.name} ({ref.sha256[:12]}) is not in the broker any more: submit the job "
                        "again with its --data")
    x, y = datasets.from_blob(blob, ref.sha256)
    if x.shape != (ref.rows, ref.inputs):
        raise JobFailed(f"dataset {ref.sha256[:12]}: x is {x.shape}, not the ({ref.rows}, {ref.inputs}) its spec says")
    return x, y


def split(spec: TrainSpec, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows), each in file order; stratified by class for class ids (contract, 2)."""
    n = len(y)
    if not spec.val_fraction:
        return np.arange(n), np.arange(0)
    rng = np.random.default_rng([spec.seed, SPLIT])
    if spec.data is not None and spec.data.classes is not None:
        held = [rows[rng.permutation(len(rows))[: _held(len(rows), spec.val_fraction)]]
                for rows in (np.flatnonzero(y == c) for c in range(spec.data.classes))]
        val = np.sort(np.concatenate(held))
    else:
        val = np.sort(rng.permutation(n)[: _held(n, spec.val_fraction)])
    train = np.setdiff1d(np.arange(n), val, assume_unique=True)
    if not len(train) or not len(val):
        raise JobFailed(f"--val-fraction {spec.val_fraction:g} leaves {len(train)} training and {len(val)} held-out "
                        "rows: each side needs one")
    return train, val


def _held(n: int, fraction: float) -> int:
    return int(math.floor(n * fraction + 0.5))  # round half up: not Python's round-half-even


def prepare(spec: TrainSpec, x: np.ndarray, y: np.ndarray, device: torch.device, dtype: torch.dtype
            ) -> tuple[Rows, Rows | None]:
    """(training rows, held-out rows or None), standardized by the training split (contract, 3), on the device."""
    train, val = split(spec, y)
    x = x.astype(np.float32)
    if spec.standardize:
        mean = x[train].mean(axis=0)
        std = x[train].std(axis=0)
        x = (x - mean) / np.where(std > 0, std, 1).astype(np.float32)

    def rows(index: np.ndarray) -> Rows:
        xs = torch.from_numpy(np.ascontiguousarray(x[index])).to(device=device, dtype=dtype)
        if y.ndim == 1:  # class ids
            target = torch.from_numpy(y[index].astype(np.int64)).to(device)
            assert spec.data is not None and spec.data.classes is not None
            ys = torch.nn.functional.one_hot(target, spec.data.classes).to(dtype)
            return Rows(xs, ys, target)
        ys = torch.from_numpy(np.ascontiguousarray(y[index])).to(device=device, dtype=dtype)
        return Rows(xs, ys, ys.argmax(dim=1) if spec.loss is Loss.CE else None)

    return rows(train), rows(val) if len(val) else None


class BatchOrder:
    """Which training rows iteration t trains on (contract, 4): one epoch's order at a time, made on demand, so
    starting at any iteration (a resume) costs one permutation."""

    def __init__(self, seed: int, rows: int, batch: int, device: torch.device) -> None:
        self.seed, self.rows, self.batch, self.device = seed, rows, batch, device
        self.per_epoch = -(-rows // batch)
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.int64)

    def __call__(self, t: int) -> torch.Tensor:
        epoch, k = divmod(t, self.per_epoch)
        if epoch != self._epoch:
            order = np.random.default_rng([self.seed, ORDER, epoch]).permutation(self.rows)
            self._epoch, self._order = epoch, torch.from_numpy(order).to(self.device)
        return self._order[k * self.batch: (k + 1) * self.batch]
