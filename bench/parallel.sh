#!/bin/sh
# Data parallelism on the CPU (tests/parallel.t checks it; this measures it):
# the micro preset on 1, 2 and 4 ranks of mpirun, one thread each, the same
# global batch (8 micro-batches of 8 x 256 tokens a step), after 3 warm-up
# steps; what each step's collectives send from a rank and the time they
# take, beside the step's time. Prints a markdown table for bench/parallel.md.
#   sh bench/parallel.sh [STEPS]
set -eu
cd "$(dirname "$0")/.."
steps=${1:-12}
. bench/lib.sh
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
micro_shards "$d"
echo "| ranks | ms / step | tokens / s | comm bytes / step / rank | comm ms / step | comm share | loss at the end |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for np in 1 2 4; do
    launch=""; [ "$np" -gt 1 ] && launch="mpirun -np $np"
    $launch sigma-pretrain -q --preset micro --data "$d/shards" --out "$d/r$np" --metrics "$d/r$np.jsonl" --seq-len 256 \
        --micro-batch 8 --batch-tokens 16384 --steps "$steps" --warmup 4 --eval-every 0 --save-every 0 -j1 2>/dev/null
    jq -s -r --arg np "$np" '[.[] | select(.type == "train")] as $all | $all[3:] as $s |
        ($s | map(16384 / .tokens_per_s) | add / length) as $t |
        ($s | map(.comm_s // 0) | add / length) as $c |
        "| \($np) | \($t * 1000 | round) | \(16384 / $t | round) | \($s | map(.comm_bytes // 0) | add / length | round) | \($c * 1000 * 10 | round / 10) | \($c / $t * 100 | round)% | \($all[-1].loss * 1e4 | round / 1e4) |"' \
        "$d/r$np.jsonl"
done
