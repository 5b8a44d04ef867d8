#!/bin/sh
# sigma-eval beside transformers: PIQA's validation set (../shared/data) on
# the demo's model (make demo first), exported with sigma-export, scored by
# both with the same threads and batch, alternated, best of REPS; items/s and
# the ratio, and both accuracies (they must be the same). Needs pip install
# torch transformers.
set -eu
REPS=${REPS:-3} BATCH=${BATCH:-8} N=${N:-400}
threads=${THREADS:-$(nproc)}
bin=${SIGMA_BIN:-$PWD/bin}
data=${SIGMA_DATA:-$PWD/../shared/data}/eval
run=pipelines/out/run tok=pipelines/out/tok.txt
[ -d "$run" ] || { echo "bench/eval.sh: no $run: run make demo first" >&2; exit 1; }
[ -f "$data/piqa_valid.jsonl" ] || { echo "bench/eval.sh: no PIQA under $data" >&2; exit 1; }
out=bench/out/eval; rm -rf "$out"; mkdir -p "$out"
"$bin/sigma-export" -q "$run" -t "$tok" -o "$out/hf" --dtype fp32
head -n "$N" "$data/piqa_valid.jsonl" >"$out/piqa.jsonl"
head -n "$N" "$data/piqa_valid_labels.lst" >"$out/labels.lst"
paste -d '\t' "$out/piqa.jsonl" "$out/labels.lst" |
    jq -R -c 'split("\t") | (.[0] | fromjson) as $d | {context: "Question: \($d.goal)\nAnswer:", choices: [$d.sol1, $d.sol2], label: (.[1] | tonumber)}' \
    >"$out/generic.jsonl"
window=$(jq .model.max_seq_len "$run/$(cat "$run/latest")/config.json")
best() { sort -g | tail -n 1; }
s=""; p=""; sacc=""; pacc=""
for r in $(seq "$REPS"); do
    t0=$(date +%s.%N)
    sacc=$("$bin/sigma-eval" piqa -q "$run" -t "$tok" "$out/piqa.jsonl" --labels "$out/labels.lst" -j "$threads" --batch "$BATCH" | jq .acc)
    t1=$(date +%s.%N)
    s="$s $(echo "$N / ($t1 - $t0)" | bc -l)"
    line=$(python3 bench/eval_hf.py "$out/hf" "$out/generic.jsonl" "$threads" "$BATCH" "$window" 2>/dev/null)
    p="$p $(echo "$line" | jq .items_per_s)"; pacc=$(echo "$line" | jq .acc)
done
S=$(echo $s | tr ' ' '\n' | best); P=$(echo $p | tr ' ' '\n' | best)
echo "PIQA validation, first $N items ($((2 * N)) requests), the demo's micro model, $threads threads, batch $BATCH, best of $REPS"
echo "| scorer | items/s | vs transformers | acc |"
echo "| --- | ---: | ---: | ---: |"
printf '| sigma-eval (whole process: load, tokenize, score) | %.1f | %.2fx | %s |\n' "$S" "$(echo "$S / $P" | bc -l)" "$sacc"
printf '| transformers %s, Qwen3MoeForCausalLM fp32 (scoring only, after loading) | %.1f | 1x | %s |\n' \
    "$(python3 -c 'import transformers; print(transformers.__version__)')" "$P" "$pacc"
