#!/bin/sh
# Many processes (comm/comm.h) under Open MPI's mpirun, oversubscribed on
# this machine's cores: 2 and 4 ranks follow one process's loss curve over
# the same global batches, a rerun is bit-identical, a run resumes with
# another number of ranks, SIGKILL of one rank ends the job within seconds
# and --resume recovers, SIGTERM stops every rank at the same step, ranks
# started differently refuse to run, sigma-sft runs the same way, and the
# NCCL path (emulated over MPI, tests/emu/nccl_emu.h) follows the emulated
# GPU's one-process run.
. "$(dirname "$0")/lib.sh"
if ! command -v mpirun >/dev/null 2>&1; then echo "1..0 # SKIP no mpirun (openmpi-bin)"; exit 0; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Open MPI's own allocations outlive MPI_Finalize: LeakSanitizer would report them, not ours
[ "${SIGMA_SAN:-}" = 1 ] && export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
mpi() { np=$1; shift; timeout -k 5 120 mpirun -np "$np" "$@"; }
if ! mpi 2 sigma-pretrain -q --preset test --dry-run >/dev/null 2>"$T/probe.err"; then
    echo "1..0 # SKIP this build cannot run under mpirun: $(grep -m 1 sigma "$T/probe.err")"; exit 0
fi

cat "$SIGMA_ROOT"/README.md "$SIGMA_ROOT"/man/*.1 >"$T/text"
sigma-tokenize train -q --vocab-size 600 --pattern o200k -o "$T/tok" "$T/text"
sigma-tokenize encode -q -t "$T/tok" --lines "$T/text" | sigma-shard -q -o "$T/shards" --val-fraction 0.05
# 50 steps of 4 micro-batches of the test preset; then --out DIR --metrics FILE
TRAIN="sigma-pretrain -q --preset test --data $T/shards --seq-len 64 --micro-batch 4 --batch-tokens 1024 --steps 50 --eval-every 25 --save-every 25 -j1"
losses() { jq -c 'select(.type != "event") | del(.tokens_per_s, .comm_s)' "$1"; }
# the largest relative difference of the train loss, step by step, of a.jsonl from b.jsonl
reldiff() {
    jq -s -r --slurpfile b "$2" '[.[] | select(.type == "train")] as $a | [$b[] | select(.type == "train")] as $b |
        if ($a | length) != ($b | length) then "steps differ" else
        [range($a | length)] | map((($a[.].loss - $b[.].loss) / $b[.].loss) | fabs) | max end' "$1"
}
within() { jq -en "(\"$1\" | tonumber? // 1) <= $2" >/dev/null; }

# ---- the same training on 1, 2 and 4 ranks --------------------------------------------------------
ok "one process, 50 steps" $TRAIN --out "$T/p1" --metrics "$T/p1.jsonl"
ok "2 ranks (mpirun -np 2)" mpi 2 $TRAIN --out "$T/p2" --metrics "$T/p2.jsonl"
ok "4 ranks" mpi 4 $TRAIN --out "$T/p4" --metrics "$T/p4.jsonl"
d2=$(reldiff "$T/p2.jsonl" "$T/p1.jsonl"); d4=$(reldiff "$T/p4.jsonl" "$T/p1.jsonl")
ok "2 ranks follow one process within 1e-5 relative every step (largest: $d2)" within "$d2" 1e-5
ok "4 ranks too (largest: $d4)" within "$d4" 1e-5
is "so do the validation losses" "$(jq -c 'select(.type == "val") | .val_loss * 1e4 | round' "$T/p4.jsonl" | tr '\n' ' ')" \
    "$(jq -c 'select(.type == "val") | .val_loss * 1e4 | round' "$T/p1.jsonl" | tr '\n' ' ')"
ok "a step reports what its collectives moved and took" \
    jq -e -s '[.[] | select(.type == "train")] | all(.comm_bytes > 0 and .comm_s >= 0)' "$T/p2.jsonl"
ok "rank 0 alone writes the metrics" test "$(jq -s '[.[] | select(.type == "train")] | length' "$T/p4.jsonl")" = 50
ok "a rerun on 2 ranks" mpi 2 $TRAIN --out "$T/p2b" --metrics "$T/p2b.jsonl"
is "  is bit-identical" "$(losses "$T/p2b.jsonl" | md5sum)" "$(losses "$T/p2.jsonl" | md5sum)"
is "  to the weights" "$(md5sum <"$T/p2b/step-00000050/model.safetensors")" "$(md5sum <"$T/p2/step-00000050/model.safetensors")"

# ---- checkpoints: one format whatever the number of ranks ----------------------------------------
half() {   # the first half of run $1 as run $2, as if killed after step 25
    rm -rf "$2" && cp -r "$1" "$2" && rm -r "$2/step-00000050" && echo step-00000025 >"$2/latest" && cp "$1.jsonl" "$2.jsonl"
}
half "$T/p2" "$T/r4"
ok "2 ranks' checkpoint resumed on 4 ranks" mpi 4 sigma-pretrain -q --data "$T/shards" --out "$T/r4" --metrics "$T/r4.jsonl" --resume -j1
d=$(reldiff "$T/r4.jsonl" "$T/p1.jsonl")
ok "  follows the one-process run (largest: $d)" within "$d" 1e-5
half "$T/p4" "$T/r1"
ok "4 ranks' checkpoint resumed by one process" sigma-pretrain -q --data "$T/shards" --out "$T/r1" --metrics "$T/r1.jsonl" --resume -j1
d=$(reldiff "$T/r1.jsonl" "$T/p1.jsonl")
ok "  follows it too (largest: $d)" within "$d" 1e-5

# ---- faults ---------------------------------------------------------------------------------------
rm -rf "$T/k"
mpirun -np 2 $TRAIN --steps 100000 --save-every 10 --out "$T/k" --metrics "$T/k.jsonl" 2>"$T/k.err" &
job=$!
n=0; while [ ! -f "$T/k/latest" ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n + 1)); done
victim=$(pgrep -f -- "--out $T/k " | while read -r p; do [ "$(ps -o comm= -p "$p")" = sigma-pretrain ] && echo "$p"; done | tail -n 1)
start=$(date +%s)
kill -9 "$victim"
wait $job; rc=$?
took=$(($(date +%s) - start))
ok "SIGKILL of one rank ends the whole job, non-zero (exit $rc)" test "$rc" -ne 0
ok "  within seconds ($took s)" test "$took" -le 15
ok "  and --resume continues from the last complete checkpoint ($(cat "$T/k/latest"))" \
    mpi 2 sigma-pretrain -q --data "$T/shards" --out "$T/k" --metrics "$T/k.jsonl" --resume --steps 60 -j1
is "  to the end" "$(cat "$T/k/latest")" step-00000060

rm -rf "$T/s"
mpirun -np 2 $TRAIN --steps 100000 --save-every 1000 --out "$T/s" --metrics "$T/s.jsonl" 2>"$T/s.err" &
job=$!
n=0; while ! grep -q '"step":3,' "$T/s.jsonl" 2>/dev/null && [ $n -lt 600 ]; do sleep 0.05; n=$((n + 1)); done
kill -TERM $job; wait $job; rc=$?
ok "SIGTERM to mpirun: every rank stops at one step and rank 0 saves it (exit $rc, $(cat "$T/s/latest" 2>/dev/null))" \
    test -f "$T/s/$(cat "$T/s/latest" 2>/dev/null)/model.safetensors"

fails_with "ranks started with other options refuse to run, naming them" 1 "the options: not the same on rank 1" \
    mpi 2 sh -c "[ \$OMPI_COMM_WORLD_RANK = 1 ] && lr=--lr=0.02; exec $TRAIN --out $T/o --metrics $T/o.jsonl \$lr"
cp -r "$T/shards" "$T/shards2"
sigma-tokenize encode -q -t "$T/tok" --lines "$SIGMA_ROOT/README.md" | sigma-shard -q -o "$T/shards3" --val-fraction 0.05
fails_with "ranks given other data refuse to run" 1 "the data .*not the same on rank 1|the options: not the same" \
    mpi 2 sh -c "d=$T/shards; [ \$OMPI_COMM_WORLD_RANK = 1 ] && d=$T/shards3; exec $TRAIN --out $T/o2 --data \$d"
fails_with "micro-batches that the ranks cannot share evenly: a usage error" 2 "cannot be shared by 3 processes" \
    mpi 3 $TRAIN --out "$T/o3"
ok "a refused run leaves nothing under its name" test ! -e "$T/o/latest" -a ! -e "$T/o3/latest"

# ---- sigma-sft ------------------------------------------------------------------------------------
sigma-tokenize train -q --chat --vocab-size 600 --pattern o200k -o "$T/chat.tok" "$T/text"
sigma-tokenize encode -q -t "$T/chat.tok" --lines "$T/text" | sigma-shard -q -o "$T/chat-shards" --val-fraction 0
sigma-pretrain -q --preset test --data "$T/chat-shards" --out "$T/base" --seq-len 64 --micro-batch 4 --batch-tokens 512 \
    --steps 5 --eval-every 0 -j1
awk 'length($0) > 20 && length($0) < 80 && !/^\./ { gsub(/\\|"/, ""); print }' "$SIGMA_ROOT"/man/sigma-shard.1 | head -n 80 |
    awk 'NR % 2 { q = $0; next } { printf "{\"prompt\": \"%s\", \"completion\": \"%s\"}\n", q, $0 }' >"$T/chat.jsonl"
SFT="sigma-sft -q --init $T/base -t $T/chat.tok --data $T/chat.jsonl --seq-len 64 --micro-batch 2 --batch-tokens 512 --steps 10 --eval-every 5 -j1"
ok "sigma-sft, one process" $SFT --out "$T/f1" --metrics "$T/f1.jsonl"
ok "sigma-sft, 4 ranks" mpi 4 $SFT --out "$T/f4" --metrics "$T/f4.jsonl"
d=$(reldiff "$T/f4.jsonl" "$T/f1.jsonl")
ok "  follow one process (largest: $d)" within "$d" 1e-5

# ---- the NCCL path, emulated ------------------------------------------------------------------------
emu=${SIGMA_TESTBIN:-}/sigma-pretrain-emu
if [ -x "$emu" ]; then
    EMU="$emu -q --preset test --data $T/shards --seq-len 64 --micro-batch 4 --batch-tokens 512 --steps 3 --eval-every 0 --device cuda"
    ok "the emulated GPU, one process" $EMU --out "$T/e1" --metrics "$T/e1.jsonl"
    ok "2 ranks over the emulated NCCL" mpi 2 $EMU --out "$T/e2" --metrics "$T/e2.jsonl"
    d=$(reldiff "$T/e2.jsonl" "$T/e1.jsonl")
    ok "  follow it (largest: $d)" within "$d" 1e-5
else
    skip "the NCCL path, emulated" "no emulated build here (it needs the CUDA headers, and is left out of the sanitizer build)"
fi
done_testing
