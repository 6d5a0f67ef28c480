"""The study note's training loop, written inline exactly as the note has it: the reference every
tensorq training run is compared against (and the baseline bench/ measures tensorq against)."""

from __future__ import annotations

import torch


def note_loop(seed: int, N: int = 64, D_in: int = 1000, H: int = 100, D_out: int = 10,
              learning_rate: float = 1e-6, iterations: int = 500, device: str = "cpu",
              dtype: torch.dtype = torch.float32, item: bool = True):
    """The losses (when `item`: the note reads each with .item()) and the final weights."""
    torch.manual_seed(seed)
    x = torch.randn(N, D_in).to(device, dtype)
    y = torch.randn(N, D_out).to(device, dtype)
    w1 = torch.randn(D_in, H).to(device, dtype).requires_grad_()
    w2 = torch.randn(H, D_out).to(device, dtype).requires_grad_()
    losses = []
    for _ in range(iterations):
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        if item:
            losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w1 -= learning_rate * w1.grad
            w2 -= learning_rate * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
    return losses, w1.detach(), w2.detach()


def note_loop_data(x, y, seed: int, hidden: int, learning_rate: float, iterations: int, classes: int | None = None,
                   val_fraction: float | None = None, standardize: bool = False, batch_size: int | None = None,
                   activation: str = "sigmoid", eval_every: int = 100):
    """The note's loop on a dataset, inline, by the README's reproducibility contract (worker/dataset.py's
    docstring), with autograd: (losses, {metric: (iterations, values)}, w1, w2). `y` holds class ids when
    `classes` is given (cross-entropy), else float targets (sum of squares)."""
    import math

    import numpy as np

    n = len(y)
    # 1. the weights
    torch.manual_seed(seed)
    w1 = torch.randn(x.shape[1], hidden)
    w2 = torch.randn(hidden, classes or y.shape[1])
    # 2. the split, 3. standardizing
    val = np.arange(0)
    if val_fraction:
        rng = np.random.default_rng([seed, 0])
        if classes:
            parts = []
            for c in range(classes):
                rows = np.flatnonzero(y == c)
                parts.append(rows[rng.permutation(len(rows))[: int(math.floor(len(rows) * val_fraction + 0.5))]])
            val = np.sort(np.concatenate(parts))
        else:
            val = np.sort(rng.permutation(n)[: int(math.floor(n * val_fraction + 0.5))])
    held = set(val.tolist())
    train = np.array([i for i in range(n) if i not in held], dtype=np.int64)
    x = x.astype(np.float32)
    if standardize:
        std = x[train].std(axis=0)
        x = (x - x[train].mean(axis=0)) / np.where(std > 0, std, 1).astype(np.float32)
    xt, xv = torch.from_numpy(x[train]), torch.from_numpy(x[val])
    if classes:
        yt, yv = torch.from_numpy(y[train].astype(np.int64)), torch.from_numpy(y[val].astype(np.int64))
    else:
        yt, yv = torch.from_numpy(y[train].astype(np.float32)), torch.from_numpy(y[val].astype(np.float32))

    def act(h):
        return torch.sigmoid(h) if activation == "sigmoid" else h.clamp(min=0)

    def loss_of(logits, target):
        if classes:
            return torch.nn.functional.cross_entropy(logits, target, reduction="sum")
        return (logits - target).pow(2).sum()

    metrics: dict[str, tuple[list[int], list[float]]] = {}

    def evaluate(t: int) -> None:
        with torch.no_grad():
            measured = {}
            if classes:
                measured["accuracy"] = (act(xt.mm(w1)).mm(w2).argmax(1) == yt).double().mean().item()
            if len(val):
                logits = act(xv.mm(w1)).mm(w2)
                measured["val_loss"] = loss_of(logits, yv).item()
                if classes:
                    measured["val_accuracy"] = (logits.argmax(1) == yv).double().mean().item()
        for name, value in measured.items():
            its, values = metrics.setdefault(name, ([], []))
            its.append(t)
            values.append(float(np.float32(value)))  # the series keeps float32 values

    # 4. the mini-batches
    per_epoch = -(-len(train) // batch_size) if batch_size else 1
    w1.requires_grad_()
    w2.requires_grad_()
    losses = []
    order = None
    for t in range(iterations):
        if t % eval_every == 0:
            evaluate(t)
        if batch_size:
            epoch, k = divmod(t, per_epoch)
            if k == 0:
                order = torch.from_numpy(np.random.default_rng([seed, 1, epoch]).permutation(len(train)))
            rows = order[k * batch_size:(k + 1) * batch_size]
            xb, yb = xt[rows], yt[rows]
        else:
            xb, yb = xt, yt
        loss = loss_of(act(xb.mm(w1)).mm(w2), yb)
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w1 -= learning_rate * w1.grad
            w2 -= learning_rate * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
    evaluate(iterations)
    return losses, metrics, w1.detach(), w2.detach()
