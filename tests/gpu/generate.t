#!/bin/sh
# sigma-generate --device cuda: the key-value cache on a GPU gives the CPU's
# greedy texts (a model confident enough that bf16 changes no choice), one
# prompt and JSON Lines batched; its memory report; a long generation
# through --slide; compute-sanitizer's memcheck on a short run.
. "$(dirname "$0")/../lib.sh"
if ! nvidia-smi >/dev/null 2>&1; then echo "1..0 # SKIP no GPU visible"; exit 0; fi

confident_model
cpu() { sigma-generate "$T/run" -t "$T/tok.txt" --device cpu -q "$@"; }
gpu() { sigma-generate "$T/run" -t "$T/tok.txt" --device cuda "$@"; }
gpu -p "the quick brown" -n 40 --keep-going -v >"$T/gpu.out" 2>"$T/gpu.err"
is "greedy text through the GPU's cache is the CPU's" "$(cat "$T/gpu.out")" "$(cpu -p "the quick brown" -n 40 --keep-going)"
ok "the memory of the cache is reported" grep -q "gpu memory: key-value cache" "$T/gpu.err"
printf '{"prompt": "the"}\n{"prompt": "the quick brown fox jumps", "max_tokens": 5}\n{"prompt": "", "stop": "lazy"}\n' >"$T/in.jsonl"
is "JSON Lines batched on the GPU give the CPU's lines" "$(gpu --jsonl --batch 2 -q "$T/in.jsonl")" "$(cpu --jsonl "$T/in.jsonl")"
ok "600 tokens through the 256-token window with --slide" test "$(gpu -p the -n 600 --keep-going --slide --ids -q | wc -l)" -eq 600
if command -v compute-sanitizer >/dev/null 2>&1; then
    ok "memcheck: no error in a short generation" compute-sanitizer --tool memcheck --error-exitcode 9 \
        sigma-generate "$T/run" -t "$T/tok.txt" --device cuda -p "the quick" -n 8 -q
else
    skip "memcheck" "no compute-sanitizer"
fi
done_testing
