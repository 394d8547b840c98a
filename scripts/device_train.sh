#!/bin/bash
# Resume zoo training on a lent GPU machine and bring the runs back (see README, "Training").
#   run (device tool):  bash scripts/device_train.sh 480 continuous-latent end-to-end feedforward
#   back here:          cp -r <files_at>/models/. models/  &&  workbench train --config models/M/train.toml --resume --export-only
# The first argument is the seconds of training to spend, shared evenly by the models named after it.
# Each run checkpoints every checkpoint_every steps, so the time limit loses at most that many steps.
# Uses the machine's own python3 (it holds torch, numpy, safetensors, click, tqdm); the repo is on PYTHONPATH.
set -u
budget=${1:?seconds of training}; shift
[ $# -ge 1 ] || { echo "name at least one model folder under models/" >&2; exit 2; }
out=${OUT:-/tmp/device-out}
share=$(( budget / $# ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
for m in "$@"; do
  [ -f "models/$m/train.toml" ] || { echo "models/$m/train.toml not found" >&2; exit 2; }
  resume=$([ -f "models/$m/run/checkpoint/state.json" ] && echo --resume)
  timeout "$share" python3 -m workbench.cli train --config "models/$m/train.toml" $resume 2>&1 | tr '\r' '\n' | grep -v "it/s" | tail -5
  mkdir -p "$out/models/$m" && cp -r "models/$m/." "$out/models/$m/"
  python3 -c "import json; print('$m', json.load(open('models/$m/run/checkpoint/state.json'))['step'])"
done
