#!/bin/bash
# Resume zoo training on a lent GPU machine, all named runs at once, and bring them back (README, "Training").
#   run (device tool):  bash scripts/device_train.sh 480 continuous-latent end-to-end
#   back here:          for m in continuous-latent end-to-end; do tar -xf <files_at>/$m.tar; done
#                       workbench train --config models/M/train.toml --resume --export-only   (if a run is unfinished)
# The first argument is the seconds of training each run gets; the runs share the GPU side by side.
# Each run checkpoints every checkpoint_every steps (atomically), so the time limit loses at most that many.
# The device tool brings back files at most two folders below $OUT, so each model comes back as one tar
# of models/M (run, card, export) named M.tar.
# Uses the machine's own python3 (it holds torch, numpy, safetensors, click, tqdm); the repo is on PYTHONPATH.
set -u
budget=${1:?seconds of training}; shift
[ $# -ge 1 ] || { echo "name at least one model folder under models/" >&2; exit 2; }
out=${OUT:-/tmp/device-out}
mkdir -p "$out"
threads=$(( $(nproc) / $# )); [ "$threads" -ge 1 ] || threads=1   # the machine's cores, split between the runs
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for m in "$@"; do
  [ -f "models/$m/train.toml" ] || { echo "models/$m/train.toml not found" >&2; exit 2; }
done
for m in "$@"; do
  resume=$([ -f "models/$m/run/checkpoint/state.json" ] && echo --resume)
  (timeout "$budget" python3 -m workbench.cli train --config "models/$m/train.toml" $resume --threads "$threads" \
     > "$out/$m.log" 2>&1; printf "\n%s exit %s\n" "$m" $? >> "$out/$m.log") &
done
wait
for m in "$@"; do
  tr '\r' '\n' < "$out/$m.log" | grep -v "^train $m: .*|" | tail -4   # what the run said, minus its progress bar
  python3 -c "import json; print('$m at step', json.load(open('models/$m/run/checkpoint/state.json'))['step'])"
  tar -cf "$out/$m.tar" "models/$m"
done
