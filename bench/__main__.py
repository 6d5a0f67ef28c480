"""`python -m bench [--json] [--quick]`: every benchmark, side by side, as ratios against their goals."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

from bench.measures import Result
from bench.stack import Stack


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer jobs and rounds (a smoke run)")
    parser.add_argument("--neighbour", action="store_true",
                        help="only the CPU job quiet and beside a busy process (setsid), as a CPU worker runs it")
    parser.add_argument("--report", action="store_true",
                        help="only what ctx.report costs a job function's ~300 us step (a 0-d tensor and a float)")
    parser.add_argument("--evaluation", action="store_true",
                        help="only the held-out metrics' cost in the training loop (digits, full and mini-batch)")
    parser.add_argument("--scale", action="store_true",
                        help="only the store at 1,000,000 jobs: filtered list, scrape time, bytes per op job")
    parser.add_argument("--blobs", action="store_true",
                        help="only a 1 GiB checkpoint through Redis, streamed in chunks vs one SET: rate and memory")
    args = parser.parse_args()
    if args.blobs:
        from bench import blobs

        return blobs.run(args.json, args.quick)
    if args.scale:
        from bench import scale

        return scale.run(args.json)
    if args.report:
        from bench import functions as function_bench

        rounds = 6 if args.quick else 30
        return _report([function_bench.report_overhead(rounds), function_bench.report_overhead(rounds, tensors=False)],
                       args.json, args.quick)
    if args.evaluation:
        from bench import measures

        rounds = 10 if args.quick else 60
        return _report([measures.evaluation(rounds), measures.evaluation(rounds, 128)], args.json, args.quick)
    if args.neighbour:
        from bench import neighbour

        return _report(neighbour.run(1000, 1 if args.quick else 3), args.json, args.quick)
    n, rounds, iterations = (60, 1, 1000) if args.quick else (300, 3, 5000)
    pair_rounds = 4 if args.quick else 8  # the training pairs are the noisiest: more rounds, an even number

    stack = Stack()
    os.environ.update({"BENCH_BROKER_URL": stack.url, "TENSORQ_BROKER_URL": stack.url})
    stack.start()
    try:
        from bench import measures
        from producer.client import Client

        client = Client(stack.url)
        results = measures.tiny_ops(stack, client, n, rounds)
        results.append(measures.train_wall(client, iterations, pair_rounds))
        results.append(measures.recording(iterations, pair_rounds))
        results.append(measures.evaluation((2 if args.quick else 6) * pair_rounds))
        from bench import functions as function_bench

        results.append(function_bench.report_overhead(pair_rounds if args.quick else 4 * pair_rounds,
                                                      steps=500 if args.quick else 2000))
        floor = measures.noise_floor(iterations, pair_rounds)
        job_id = client.submit_op("add", 1, 2, device="cpu", queue="bench").id
        results += measures.startup(stack, job_id, 5 if args.quick else 15)
    finally:
        stack.stop()

    return _report(results, args.json, args.quick, floor)


def _report(results: list[Result], as_json: bool, quick: bool, floor: dict[str, Any] | None = None) -> int:
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} {platform.machine()}, "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}", "quick": quick,
              "results": [r.as_dict() for r in results], **({"noise_floor": floor} if floor else {})}
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(f"tensorq benchmarks, {report['date']}, {report['machine']}")
        for r in results:
            print(f"  {'ok ' if r.met else 'MISS'} {r.name}: tensorq {r.tensorq:g} {r.unit}, yardstick "
                  f"{r.yardstick:g} {r.unit}: ratio {r.ratio:.3f} (goal {r.goal}) - {r.detail}")
        if floor:
            print(f"  noise floor, {floor['name']}: ratio {floor['ratio']:.3f} - {floor['detail']}")
    return 0 if all(r.met for r in results) else 1

if __name__ == "__main__":
    sys.exit(main())
