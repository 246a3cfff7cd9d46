#!/usr/bin/env bash
# The TTS measurements that want a GPU (issues 17 and 19), for a lent GPU machine, one stage per call
# (the consistency stage carries two checkpoints, the race stage Matcha-TTS's modules and eSpeak NG):
#
#   bash experiments/gpu_tts_checks.sh race OUT         # Matcha-TTS speed race, PyTorch on CUDA, batch 1 and 16
#   bash experiments/gpu_tts_checks.sh consistency OUT  # EDM teacher vs CoMoSpeech student: synthesized and timed
#
# The consistency stage needs runs/tts_edm_tiny and runs/tts_cd_tiny (their latest checkpoints suffice) and the
# test-seen manifest (data/espeak/test-seen.jsonl, corpus.json); its audio comes back as OUT/<row>.tar and is scored where the recordings and the recognizer
# are: `python experiments/bench_consistency_tts.py --teacher runs/tts_edm_tiny --cd runs/tts_cd_tiny
# --score-audio DIR` (DIR holding report.json and the unpacked rows). Race reports render with
# `python experiments/matcha_speed_race.py --render OUT/race_b1.json OUT/race_b16.json`.
set -u
stage=${1:?race or consistency}
out=${2:-runs/gpu_tts_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false  # PyTorch shares the GPU in the race
python=${PYTHON:-python3}
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  "$python" -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"
} > "$out/device_$stage.txt" 2>&1
cat "$out/device_$stage.txt"
case $stage in
  race)
    for batch in 1 16; do
      start=$SECONDS
      timeout "${RACE_SECONDS:-200}" "$python" experiments/matcha_speed_race.py --torch-device cuda --batch "$batch" \
        --repeats 7 --out "$out/race_b$batch.json" --no-docs > "$out/race_b$batch.log" 2>&1
      echo "race batch $batch rc=$? in $((SECONDS - start)) s"
      grep -A12 '"rows"' "$out/race_b$batch.json" 2>/dev/null || tail -n 20 "$out/race_b$batch.log"
    done ;;
  consistency)
    start=$SECONDS
    rm -rf /tmp/consistency
    # The manifest reader skips records whose recording is missing; this stage never reads them (score=False),
    # so where they were not carried (the 64 MiB a call takes), empty files stand in for them.
    "$python" -c "import json, os
for line in open('data/espeak/test-seen.jsonl'):
    path = os.path.join('data/espeak', json.loads(line)['audio'])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, 'a').close()"
    timeout "${CONSISTENCY_SECONDS:-420}" "$python" experiments/bench_consistency_tts.py \
      --teacher runs/tts_edm_tiny --cd runs/tts_cd_tiny \
      --chosen-from experiments/results/bench_consistency_tts_s26.json --audio-out /tmp/consistency \
      > "$out/consistency.log" 2>&1
    echo "consistency rc=$? in $((SECONDS - start)) s"
    grep -E '^\[(test-seen|race)\]' "$out/consistency.log" || tail -n 30 "$out/consistency.log"
    cp /tmp/consistency/report.json "$out/consistency_report.json" 2>/dev/null
    for row in /tmp/consistency/*/; do
      tar -C /tmp/consistency -cf "$out/$(basename "$row").tar" "$(basename "$row")"
    done ;;
  *) echo "unknown stage $stage (race or consistency)"; exit 2 ;;
esac
