#!/bin/bash
# A Slurm batch job: sigma-pretrain on 2 nodes of 8 GPUs, one rank per GPU,
# data parallel with the AdamW moments sharded (sigma-pretrain(1), "Running
# on many processes"). Submit it with
#
#   sbatch pipelines/slurm.sh              # or: sbatch --nodes 4 pipelines/slurm.sh
#
# EP=8 shares each layer's experts among the 8 GPUs of a node (--ep: groups
# are consecutive ranks, and srun numbers a node's tasks together), which
# sigma-moe-tiny needs to fit 80 GB devices (bench/ep.md):
#
#   EP=8 PRESET=sigma-moe-tiny sbatch pipelines/slurm.sh
#
# It resumes the run in $OUT when one is there, so the same script restarts
# a job after a crash, a time limit or a preemption (--requeue): Slurm sends
# SIGTERM before the end (--signal), every rank stops at the same step after
# a checkpoint, and the requeued job continues from it. If one rank dies,
# --kill-on-bad-exit ends the others at once.
#SBATCH --job-name=sigma-pretrain
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=B:TERM@300
#SBATCH --requeue
#SBATCH --output=%x-%j.log
set -euo pipefail

DATA=${DATA:-shards}            # a shard set (sigma-shard) on a file system every node sees
OUT=${OUT:-runs/nano}           # the run directory, likewise shared
METRICS=${METRICS:-$OUT.jsonl}
PRESET=${PRESET:-nano}
EP=${EP:-1}                     # ranks that share each layer's experts

resume=""
[ -e "$OUT/latest" ] && resume=--resume

# the batch job's shell passes SIGTERM on to srun, which passes it to every rank
trap 'kill -TERM "$pid" 2>/dev/null' TERM
srun --kill-on-bad-exit=1 --cpu-bind=cores \
    sigma-pretrain --preset "$PRESET" --ep "$EP" --data "$DATA" --out "$OUT" --metrics "$METRICS" \
        --seq-len 2048 --micro-batch 8 --batch-tokens 2M --steps 20000 \
        --topk-schedule '0:4,4,1...; 2000:1...' --balance top1-lbl \
        --threads "$SLURM_CPUS_PER_TASK" $resume &
pid=$!
status=0
wait "$pid" || status=$?
# a SIGTERM ends the first wait at once: wait again for the ranks' checkpoint
if [ "$status" -gt 128 ]; then status=0; wait "$pid" || status=$?; fi
exit "$status"
