#!/usr/bin/env bash
# The main job on the embedded default: up -> the note's tensor ops -> a training job showing its loss -> down.
# Run from a checkout after installing (see README): PATH="$PWD/.venv/bin:$PATH" examples/quickstart.sh
set -euo pipefail

tensorq up --detach
trap 'tensorq down' EXIT

A='[[[1,2],[3,4]],[[5,6],[7,8]]]'
B='[[[9,10],[3,4]],[[5,6],[7,8]]]'
for op in add sub mul div matmul; do
  echo "== $op"
  tensorq submit op "$op" "$A" "$B" --wait
done

echo "== train: the note's two-layer network, 500 iterations, seed 0"
job=$(tensorq submit train --iterations 500 --seed 0 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
tensorq wait "$job"
echo "== loss history of $job (first rows and the last)"
tensorq history "$job" --format csv | sed -n '1,6p;$p'
