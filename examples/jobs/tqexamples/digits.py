"""`digits`: an MLP classifying scikit-learn's bundled 8x8 digits (1,797 images, no download), trained on
mini-batches with a held-out split; `loss` every step, `accuracy` (on the training rows) and `val_accuracy` /
`val_loss` (on the held-out ones) every `eval_every` steps and at the last.

    tensorq submit run digits --param steps=1000 --param optimizer=sgd --param lr=0.1 --wait
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DigitsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(300, ge=1)
    lr: float = Field(3e-3, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    hidden: int = Field(64, ge=1, le=4096)
    batch_size: int = Field(64, ge=1)
    val_fraction: float = Field(0.25, gt=0, lt=1)
    eval_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(100, ge=1)


def digits(ctx: Any) -> dict[str, float]:
    import torch
    from sklearn.datasets import load_digits
    from torch.nn import functional

    from tqexamples.nets import MLP

    p = DigitsParams(**ctx.params)
    ctx.total = p.steps
    images, labels = load_digits(return_X_y=True)
    x, y = torch.tensor(images, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)
    # The split comes from a generator of its own seeded by the job's seed: the same rows held out on every
    # attempt, whatever torch's global RNG holds after a restore.
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(ctx.seed))
    held = int(len(x) * p.val_fraction)
    val, train = order[:held], order[held:]
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-3)  # the training rows' statistics only
    x = ((x - mean) / std).to(ctx.device)
    y = y.to(ctx.device)
    x_train, y_train, x_val, y_val = x[train], y[train], x[val], y[val]

    model = MLP(x.shape[1], p.hidden, 10).to(ctx.device)
    opt: torch.optim.Optimizer = (torch.optim.Adam(model.parameters(), lr=p.lr) if p.optimizer == "adam"
                                  else torch.optim.SGD(model.parameters(), lr=p.lr, momentum=0.9))
    start = 0
    if (saved := ctx.restore()) is not None:  # after building: the batches below draw from the restored RNG
        start, state = saved
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])

    def evaluate() -> dict[str, float]:
        with torch.no_grad():
            logits = model(x_val)
            return {"accuracy": (model(x_train).argmax(1) == y_train).float().mean().item(),
                    "val_accuracy": (logits.argmax(1) == y_val).float().mean().item(),
                    "val_loss": functional.cross_entropy(logits, y_val).item()}

    loss = torch.zeros(())
    for step in range(start, p.steps):
        rows = torch.randint(0, len(x_train), (p.batch_size,)).to(ctx.device)
        loss = functional.cross_entropy(model(x_train[rows]), y_train[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ctx.report(step, loss=loss.detach())
        if (step + 1) % p.eval_every == 0 or step + 1 == p.steps:
            ctx.report(step, **evaluate())
        if (step + 1) % p.checkpoint_every == 0 and step + 1 < p.steps:
            ctx.checkpoint(step + 1, {"model": model.state_dict(), "opt": opt.state_dict()})
    return {"final_loss": loss.item(), **evaluate()}


digits.params = DigitsParams  # type: ignore[attr-defined]
