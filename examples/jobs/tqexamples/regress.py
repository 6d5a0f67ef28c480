"""`regress`: a small MLP fitting y = sin(x @ w) + noise, a relation drawn from the job's seed, with Adam on
mini-batches. A step takes a few hundred microseconds on a CPU at the defaults.

    tensorq submit run regress --param steps=2000 --param lr=3e-3 --seed 1 --watch
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

INPUTS, ROWS, BATCH = 4, 1024, 64


class RegressParams(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt --param is refused, not ignored

    steps: int = Field(500, ge=1)
    lr: float = Field(1e-2, gt=0)
    hidden: int = Field(32, ge=1, le=4096)
    checkpoint_every: int = Field(100, ge=1)


def regress(ctx: Any) -> dict[str, float]:
    import torch

    from tqexamples.nets import MLP

    p = RegressParams(**ctx.params)
    ctx.total = p.steps  # `tensorq workers` shows step i/N
    # The data comes from a generator of its own, seeded by the job's seed: the same on every attempt, whatever
    # torch's global RNG holds after a restore.
    data = torch.Generator().manual_seed(ctx.seed)
    w = torch.randn(INPUTS, 1, generator=data)
    x = torch.randn(ROWS, INPUTS, generator=data)
    y = torch.sin(x @ w) + 0.05 * torch.randn(ROWS, 1, generator=data)
    x, y = x.to(ctx.device), y.to(ctx.device)

    model = MLP(INPUTS, p.hidden, 1).to(ctx.device)  # initialised from the global RNG, seeded by tensorq
    opt = torch.optim.Adam(model.parameters(), lr=p.lr)
    start = 0
    # After building the model: restore() puts back the global RNG state of the checkpoint, which the batches
    # below draw from, so a resumed run draws the batches the dead attempt would have.
    if (saved := ctx.restore()) is not None:
        start, state = saved
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])

    loss = torch.zeros(())
    for step in range(start, p.steps):
        rows = torch.randint(0, ROWS, (BATCH,)).to(ctx.device)
        loss = torch.nn.functional.mse_loss(model(x[rows]), y[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ctx.report(step, loss=loss.detach())  # a 0-d tensor: no device sync per step
        if (step + 1) % p.checkpoint_every == 0 and step + 1 < p.steps:
            ctx.checkpoint(step + 1, {"model": model.state_dict(), "opt": opt.state_dict()})  # the next step to run
    return {"final_loss": loss.item()}


regress.params = RegressParams  # type: ignore[attr-defined]  # tensorq validates --param values against it
