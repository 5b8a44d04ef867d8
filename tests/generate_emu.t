#!/bin/sh
# sigma-generate --device cuda on the CPU emulation of CUDA and cuBLAS
# (tests/emu/cuda_emu.h): the key-value cache's GPU path through the device
# table, on a machine without a GPU. A model trained on a repeated sentence
# is confident enough that bf16 changes no greedy choice: the texts are the
# CPU's. Slow (the emulation runs every thread of every block), so short.
. "$(dirname "$0")/lib.sh"
emu=${SIGMA_TESTBIN:-}/sigma-generate-emu
if [ ! -x "$emu" ]; then echo "1..0 # SKIP no emulated build here (it needs the CUDA headers, and is left out of the sanitizer build)"; exit 0; fi

confident_model
cpu() { sigma-generate "$T/run" -t "$T/tok.txt" --device cpu -q "$@"; }
gpu() { "$emu" "$T/run" -t "$T/tok.txt" --device cuda "$@"; }
gpu -p "the quick brown" -n 12 --keep-going -v >"$T/gpu.out" 2>"$T/gpu.err"
is "greedy text through the emulated GPU's cache is the CPU's" "$(cat "$T/gpu.out")" "$(cpu -p "the quick brown" -n 12 --keep-going)"
ok "on the cuda device" grep -q "device: cuda" "$T/gpu.err"
ok "its cache is bf16: half the CPU's bytes a token" grep -q "key-value cache: 1 rows x 15 tokens x 128 bytes" "$T/gpu.err"
printf '{"prompt": "the"}\n{"prompt": "the quick brown fox jumps", "max_tokens": 5}\n{"prompt": "", "stop": "lazy"}\n' >"$T/in.jsonl"
is "JSON Lines batched on the emulated GPU give the CPU's lines" "$(gpu --jsonl --batch 2 -q "$T/in.jsonl")" "$(cpu --jsonl "$T/in.jsonl")"
done_testing
