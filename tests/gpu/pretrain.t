#!/bin/sh
# sigma-pretrain --device cuda: the micro preset's loss curve beside the
# CPU's over 200 steps, the same bits twice, exact resume from a checkpoint,
# the same with the hand-written kernels (grouped experts, fused attention)
# and with the libraries' (cuDNN attention, CUTLASS experts), the memory
# report, and compute-sanitizer's memcheck on short runs.
. "$(dirname "$0")/../lib.sh"
if ! nvidia-smi >/dev/null 2>&1; then echo "1..0 # SKIP no GPU visible"; exit 0; fi

cat "$SIGMA_ROOT"/README.md "$SIGMA_ROOT"/man/* "$SIGMA_ROOT"/lib/*/*.c >"$T/text"
tokgen bytes "$T/text" >"$T/text.tok"
sigma-shard -q -o "$T/shards" --shard-tokens 100k --val-fraction 0.05 "$T/text.tok"
run() {   # device out [options]
    dev=$1 out=$2; shift 2
    sigma-pretrain -q --preset micro --data "$T/shards" --out "$out" --metrics "$out.jsonl" --device "$dev" --seq-len 128 \
        --micro-batch 8 --batch-tokens 2048 --lr 3e-3 --balance lbl-global "$@"
}
losses() { jq -c 'select(.type == "train") | [.step, .loss, .grad_norm]' "$1"; }
mean() { jq -s "[.[] | select(.type == \"train\" and .step >= $2 and .step < $3) | .$4] | add / length" "$1"; }

# ---- the loss curve: 200 steps on each device from the same initial weights -------------------------
ok "200 steps on the CPU" run cpu "$T/cpu" --steps 200 --warmup 20 --eval-every 50 --eval-batches 4 --save-every 200
ok "200 steps on the GPU" run cuda "$T/gpu" --steps 200 --warmup 20 --eval-every 50 --eval-batches 4 --save-every 200
c0=$(mean "$T/cpu.jsonl" 0 1 ce); g0=$(mean "$T/gpu.jsonl" 0 1 ce)
ok "the first step's loss agrees ($g0 ~ $c0)" jq -en "($g0 - $c0 | fabs) < 0.01 * $c0"
for w in "0 50" "50 100" "100 150" "150 200"; do
    set -- $w
    c=$(mean "$T/cpu.jsonl" $1 $2 ce); g=$(mean "$T/gpu.jsonl" $1 $2 ce)
    ok "steps $1-$2: mean loss on the GPU $g follows the CPU's $c (within 3%)" jq -en "($g - $c | fabs) < 0.03 * $c"
done
cl=$(jq -s '[.[] | select(.type == "val")] | last | .val_loss' "$T/cpu.jsonl")
gl=$(jq -s '[.[] | select(.type == "val")] | last | .val_loss' "$T/gpu.jsonl")
ok "final validation loss: GPU $gl, CPU $cl (within 3%)" jq -en "($gl - $cl | fabs) < 0.03 * $cl"
first=$(mean "$T/gpu.jsonl" 0 10 ce); last=$(mean "$T/gpu.jsonl" 190 200 ce)
ok "the GPU's loss falls on real text ($first -> $last)" jq -en "$last < $first - 1"

# ---- determinism and exact resume ------------------------------------------------------------------
ok "30 steps" run cuda "$T/a" --steps 30 --schedule constant --warmup 0 --eval-every 0 --save-every 10
ok "30 steps again" run cuda "$T/b" --steps 30 --schedule constant --warmup 0 --eval-every 0 --save-every 10
is "the same seed gives the same losses bit for bit" "$(losses "$T/b.jsonl" | md5sum)" "$(losses "$T/a.jsonl" | md5sum)"
ok "10 steps" run cuda "$T/r" --steps 10 --schedule constant --warmup 0 --eval-every 0 --save-every 10
ok "then --resume to 30" run cuda "$T/r" --steps 30 --schedule constant --warmup 0 --eval-every 0 --save-every 10 --resume
is "a resumed run gives the same losses bit for bit" "$(losses "$T/r.jsonl" | md5sum)" "$(losses "$T/a.jsonl" | md5sum)"
is "and the same weights" "$(md5sum <"$T/r/step-00000030/model.safetensors")" "$(md5sum <"$T/a/step-00000030/model.safetensors")"
ok "recomputed experts: 30 steps" run cuda "$T/re" --steps 30 --schedule constant --warmup 0 --eval-every 0 --save-every 10 --recompute-experts
is "recomputing the expert intermediates changes no bit" "$(losses "$T/re.jsonl" | md5sum)" "$(losses "$T/a.jsonl" | md5sum)"
ok "top-k switch on the GPU (progressive sparsification)" run cuda "$T/p" --steps 14 --topk-schedule "0:4,2,1...; 10:1..." --eval-every 0
is "k per layer before and after the switch" \
    "$(jq -c 'select(.type == "train" and (.step == 9 or .step == 10)) | .topk' "$T/p.jsonl" | tr '\n' ' ')" "[4,2,1,1] [1,1,1,1] "

# ---- other kernel paths: the same curve, the same bits twice ----------------------------------------------
# WHAT RUN: with the paths SIGMA_EXPERTS and SIGMA_ATTENTION name, 200 steps beside the CPU's curve, then 30
# steps twice (RUNa, RUNb), bit for bit
paths_follow() {
    ok "200 steps on the GPU with $1" run cuda "$T/$2" --steps 200 --warmup 20 --eval-every 50 --eval-batches 4 --save-every 200
    for w in "0 50" "50 100" "100 150" "150 200"; do
        set -- "$1" "$2" $w
        c=$(mean "$T/cpu.jsonl" $3 $4 ce); g=$(mean "$T/$2.jsonl" $3 $4 ce)
        ok "$1, steps $3-$4: mean loss $g follows the CPU's $c (within 3%)" jq -en "($g - $c | fabs) < 0.03 * $c"
    done
    ok "$1: 30 steps" run cuda "$T/$2a" --steps 30 --schedule constant --warmup 0 --eval-every 0 --save-every 10
    ok "$1: 30 steps again" run cuda "$T/$2b" --steps 30 --schedule constant --warmup 0 --eval-every 0 --save-every 10
    is "$1: the same losses bit for bit" "$(losses "$T/$2b.jsonl" | md5sum)" "$(losses "$T/$2a.jsonl" | md5sum)"
}
# the hand-written kernels
SIGMA_EXPERTS=grouped SIGMA_ATTENTION=flash paths_follow "grouped experts and fused attention" gg
# the libraries' (cuDNN's backward is its deterministic one), really taken, not a fallback
SIGMA_EXPERTS=cutlass SIGMA_ATTENTION=cudnn paths_follow "cuDNN attention and CUTLASS experts" lib
taken() { jq -r '.. | .gpu_paths? // empty | "\(.attention) \(.experts)"' "$1"; }
is "the run took cuDNN's attention and CUTLASS's experts" "$(taken "$T/lib/step-00000200/config.json")" "cudnn cutlass"

# ---- what a user sees -------------------------------------------------------------------------------
sigma-pretrain --preset micro --data "$T/shards" --out "$T/m" --device cuda --seq-len 128 --micro-batch 8 --batch-tokens 1024 \
    --steps 1 --eval-every 0 2>"$T/mem.err" >/dev/null
ok "the memory of each buffer is printed at start" grep -q "gpu memory: .*fp32 master weights" "$T/mem.err"
grep "gpu" "$T/mem.err" | sed 's/^/# /'

# ---- compute-sanitizer ------------------------------------------------------------------------------
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
if [ -z "$cs" ]; then skip "compute-sanitizer memcheck" "compute-sanitizer not found"
elif ! "$cs" --error-exitcode 9 "${SIGMA_TESTBIN}/cuda-check" >"$T/cs0" 2>&1; then
    skip "compute-sanitizer memcheck" "it does not run on this machine: $(grep -m1 -i error "$T/cs0")"
else
    memcheck() {   # WHAT OUT [NAME=VALUE...]: a short run in that environment, its report's first lines as comments
        what=$1 out=$2; shift 2
        ok "compute-sanitizer memcheck: $what" env "$@" "$cs" --tool memcheck --error-exitcode 9 --leak-check full \
            sigma-pretrain -q --preset micro --data "$T/shards" --out "$T/$out" --device cuda --seq-len 64 --micro-batch 2 \
            --batch-tokens 128 --steps 2 --eval-every 0 --topk-schedule "0:2,1..."
        grep -h -A8 "^=========" "$T/.out" "$T/.err" | head -n 60 | sed 's/^/# /'
    }
    memcheck "a short run is clean" cs
    memcheck "the same with the fused kernels" csg SIGMA_EXPERTS=grouped SIGMA_ATTENTION=flash
    # CUTLASS's kernels, ours to get right; cuDNN's are its own, and their
    # internals would be reported as ours
    memcheck "the same with CUTLASS's expert products" csc SIGMA_EXPERTS=cutlass
fi
done_testing
