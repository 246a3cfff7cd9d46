#!/usr/bin/env bash
# Tile sweep for the Pallas flash-attention kernel on a GPU: each line of CONFIGS (block sizes
# "fwd_q fwd_k bwd_q bwd_k", then extra bench_kernels flags after "|") runs the kernel alone at
# T = 4096, causal, bfloat16, head dims 64 and 128, forward and forward+backward. Rows go to
# OUT/tune.jsonl tagged with their config; a short table is printed. Repeat a line to see the noise.
#
#   bash experiments/tune_flash_attention.sh OUT
set -u
out=${1:-runs/tune_flash_attention}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
scratch=$(mktemp -d)
i=0
while IFS='|' read -r blocks extra; do
  i=$((i + 1))
  start=$SECONDS
  timeout 45 "$python" experiments/bench_kernels.py --only attention --impls pallas --masks causal --lengths 4096 \
    --min-seconds 0.2 --blocks $blocks $extra --out "$scratch/$i" --no-docs > "$scratch/$i.log" 2>&1
  rc=$?
  grep '"impl"' "$scratch/$i.log" | sed "s/^{/{\"config\": \"$blocks $extra\", /" >> "$out/tune.jsonl"
  echo "config $i [$blocks $extra] rc=$rc $((SECONDS - start)) s"
  grep '"impl"' "$scratch/$i.log" | "$python" -c "
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print('  ', r['pass'], 'D', r['head_dim'], '%.3f ms' % r['ms'] if 'ms' in r else r.get('error', '')[:150])"
done <<'CONFIGS'
128 64 64 64|
128 128 32 64|
64 64 64 32|
128 32 128 64|
64 128 64 128|
128 64 32 32|
128 64 64 64|--stages 3
128 64 64 64|--stages 1
128 64 64 64|--warps 4
128 64 64 64|--warps 8
128 128 128 32|--stages 3
256 64 128 128|--warps 8
128 64 64 64|
CONFIGS
