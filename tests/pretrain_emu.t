#!/bin/sh
# sigma-pretrain --device cuda on the CPU emulation of CUDA and cuBLAS
# (tests/emu/cuda_emu.h): the trainer's GPU path (device dispatch, state to
# and from the device, checkpoints, resume) checked on a machine without a
# GPU. A few steps of the test preset with the default kernels and with the
# fused ones: the losses follow the CPU's, and a resumed run continues bit
# for bit. Slow (the emulation runs every thread of every block), so short.
. "$(dirname "$0")/lib.sh"
emu=${SIGMA_TESTBIN:-}/sigma-pretrain-emu
if [ ! -x "$emu" ]; then echo "1..0 # SKIP no emulated build here (it needs the CUDA headers, and is left out of the sanitizer build)"; exit 0; fi

cat "$SIGMA_ROOT"/README.md "$SIGMA_ROOT"/man/* >"$T/text"
tokgen bytes "$T/text" >"$T/text.tok"
sigma-shard -q -o "$T/shards" --shard-tokens 50k --val-fraction 0.05 "$T/text.tok"
run() {   # program device out [options]
    prog=$1 dev=$2 out=$3; shift 3
    "$prog" -q --preset test --data "$T/shards" --out "$out" --metrics "$out.jsonl" --device "$dev" --seq-len 64 --micro-batch 4 \
        --batch-tokens 256 --schedule constant --warmup 0 --eval-every 0 --save-every 2 --balance top1-lbl "$@"
}
losses() { jq -c 'select(.type == "train") | [.step, .loss, .grad_norm]' "$1"; }
close() {   # a.jsonl b.jsonl: every step's loss within 0.5%
    jq -s -e --slurpfile b "$2" '[.[] | select(.type == "train")] as $a | [$b[] | select(.type == "train")] as $b |
        ($a | length) == ($b | length) and ([range($a | length)] | all(($a[.].loss - $b[.].loss | fabs) < 0.005 * $b[.].loss))' "$1" >/dev/null
}

ok "4 steps on the CPU" run sigma-pretrain cpu "$T/cpu" --steps 4
ok "4 steps on the emulated GPU" run "$emu" cuda "$T/gpu" --steps 4
ok "the emulated GPU's losses follow the CPU's (within 0.5%)" close "$T/gpu.jsonl" "$T/cpu.jsonl"
ok "2 steps" run "$emu" cuda "$T/r" --steps 2
ok "then --resume to 4" run "$emu" cuda "$T/r" --steps 4 --resume
is "a resumed run gives the same losses bit for bit" "$(losses "$T/r.jsonl" | md5sum)" "$(losses "$T/gpu.jsonl" | md5sum)"
is "and the same weights" "$(md5sum <"$T/r/step-00000004/model.safetensors")" "$(md5sum <"$T/gpu/step-00000004/model.safetensors")"
export SIGMA_EXPERTS=grouped SIGMA_ATTENTION=flash
ok "4 steps with the grouped experts and the fused attention" run "$emu" cuda "$T/f" --steps 4
ok "their losses follow the CPU's too" close "$T/f.jsonl" "$T/cpu.jsonl"
done_testing
