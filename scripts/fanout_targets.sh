#!/usr/bin/env bash
# The measurements behind issue 19's targets, for one model folder (default: the shipped default), written
# as records in that folder (the model card lists them). One thread: a training run may hold the other core.
#   bash scripts/fanout_targets.sh [MODEL] [quick]
# "quick" runs only the independent checks (minutes); without it the 512-graph evaluation of the paper's
# law at N = 8..128 and the robustness table run too (most of an hour on one core).
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-default}"
seeds=0,1,2,3,4
export OMP_NUM_THREADS=1
py=.venv/bin/python
# the paper's law at N = 128 under five name maps (>= 99.5% under each)
$py probes/independent_check.py --model "$model" --sizes 128 --count 200 --name-seeds $seeds --tag independent-name-seeds
# two variables each read by 30-60 later equations (>= 99% of graphs)
$py probes/independent_check.py --model "$model" --sizes 64,128 --count 100 --family hub --name-seeds $seeds --tag independent-hubs
# w = c, v0 = c, v_i = v_(i-1) + w through every node (every variable filled, every value right)
$py probes/independent_check.py --model "$model" --sizes 40,64,96,127 --count 4 --family chain --name-seeds $seeds --tag independent-chains
if [[ "${2:-}" != quick ]]; then
  .venv/bin/workbench eval --model "$model" --sizes 8,16,...,128 --count 512 --seed 0 --record
  .venv/bin/workbench robustness --model "$model" --families all --sizes 32,64,128 --count 16 --seed 0 --record
fi
