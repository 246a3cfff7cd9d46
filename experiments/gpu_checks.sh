#!/usr/bin/env bash
# Everything in this repository that needs a GPU, in one command (for a lent GPU machine):
# the kernel and attention tests compiled for the device (they run interpreted elsewhere), the MAS
# benchmark, then the attention sweep. Each stage has a time limit and keeps what it measured when
# cut short (results.json is rewritten after every measurement); the docs are rendered afterwards
# with `python experiments/bench_kernels.py --render OUT/results.json`.
#
#   bash experiments/gpu_checks.sh OUT [TEST_SECONDS MAS_SECONDS ATTENTION_SECONDS]
set -u
out=${1:-runs/gpu_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  "$python" -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())"
} > "$out/device.txt" 2>&1
cat "$out/device.txt"
start=$SECONDS
timeout "${2:-170}" "$python" -m pytest -q -p no:cacheprovider tests/kernels tests/nn/test_nn_attention.py \
  > "$out/tests.log" 2>&1
echo "tests rc=$? in $((SECONDS - start)) s: $(tail -n 1 "$out/tests.log")"
start=$SECONDS
timeout "${3:-70}" "$python" experiments/bench_kernels.py --only mas --out "$out" --no-docs > "$out/mas.log" 2>&1
echo "mas rc=$? in $((SECONDS - start)) s"
start=$SECONDS
timeout "${4:-320}" "$python" experiments/bench_kernels.py --only attention --min-seconds 0.3 --out "$out" --no-docs \
  > "$out/attention.log" 2>&1
echo "attention rc=$? in $((SECONDS - start)) s"
grep -h '"impl"' "$out/mas.log" "$out/attention.log" | cut -c1-200 | tail -n 60
