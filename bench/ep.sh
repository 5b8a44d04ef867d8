#!/bin/sh
# Expert parallelism on the CPU (tests/parallel.t checks it; this measures
# it): the micro preset on 2 ranks without and with --ep 2, and on 4 ranks
# with --ep 2 and --ep 4, one thread each, the same global batch (8
# micro-batches of 8 x 256 tokens a step); what a step's collectives send
# from a rank, of it the all-to-alls of rows, the busiest rank's rows, and
# what each rank holds. Then the dry-run plan of sigma-moe-tiny on 8 GPUs.
# Prints markdown for bench/ep.md.
#   sh bench/ep.sh [STEPS]
set -eu
cd "$(dirname "$0")/.."
steps=${1:-8}
. bench/lib.sh
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
micro_shards "$d"
TRAIN="sigma-pretrain -q --preset micro --data $d/shards --seq-len 256 --micro-batch 8 --batch-tokens 16384 --steps $steps \
    --warmup 4 --eval-every 0 --save-every 0 -j1"
echo "| ranks | --ep | parameters held by a rank | comm bytes / step / rank | of which all-to-all | busiest rank's rows over the mean, layer 0..3 | loss at the end |"
echo "| ---: | ---: | ---: | ---: | ---: | --- | ---: |"
for run in "2 1" "2 2" "4 2" "4 4"; do
    set -- $run
    held=$(sigma-pretrain --preset micro --data "$d/shards" --dry-run --nproc "$1" --ep "$2" 2>/dev/null | sed -n 's/.*holds \([0-9.]*B\) parameters.*/\1/p')
    mpirun -np "$1" $TRAIN --ep "$2" --out "$d/r$1-$2" --metrics "$d/r$1-$2.jsonl" 2>/dev/null
    jq -s -r --arg np "$1" --arg ep "$2" --arg held "$held" '[.[] | select(.type == "train")] as $s |
        ($s | map(.rank_load_max // []) | transpose | map(add / length * 100 | round / 100 | tostring) | join(", ")) as $r |
        "| \($np) | \($ep) | \($held) | \($s | map(.comm_bytes) | add / length | round) | \($s | map(.alltoall_bytes // 0) | add / length | round) | \(if $r == "" then "-" else $r end) | \($s[-1].loss * 1e4 | round / 1e4) |"' \
        "$d/r$1-$2.jsonl"
done
echo
echo '```'
sigma-pretrain --preset sigma-moe-tiny --dry-run --nproc 8 --ep 8 --micro-batch 1 --seq-len 4096 --batch-tokens 32768 | sed "/^device:/d; /^memory:/d; /^flops:/d"
echo '```'
