#!/bin/sh
# sigma-sft beside sigma-pretrain on the same model, rows and threads: the
# sft pipeline's base model (make sft first) fine-tuned on its conversations,
# packed and one a row (--no-pack), against pretraining the same preset on
# its facts; for each row length of LENGTHS (default 128 and 512, the
# model's longest) STEPS steps (default 40) of 4096 tokens, one run each,
# THREADS threads (default 1). Tokens/s is the median of the steps' (metrics
# tokens_per_s, after the first 3): rows x length over the step's time,
# padding included; sigma-sft's conversation tokens/s is that times the
# share of the rows its conversations fill (its own log line), its learned
# tokens/s the assistant tokens with loss per second.
set -eu
STEPS=${STEPS:-40} THREADS=${THREADS:-1} LENGTHS=${LENGTHS:-128 512}
bin=${SIGMA_BIN:-$PWD/bin}
sft=${OUT:-pipelines/out/sft}
[ -f "$sft/base/latest" ] || { echo "bench/sft.sh: no $sft/base: run make sft first" >&2; exit 1; }
out=bench/out/sft; rm -rf "$out"; mkdir -p "$out"
median() { jq -s -r --argjson skip 3 'map(select(.type == "train" and .step >= $skip) | '"$1"') | sort |
    if length == 0 then "n/a" else .[length / 2 | floor] | round end' "$2"; }

echo "The micro preset (vocabulary $(jq .model.vocab_size "$sft/base/$(cat "$sft/base/latest")/config.json")), 4096 tokens a step, $THREADS thread(s), $STEPS steps a run; median tokens/s after the first 3 steps"
echo "| rows | run | row tokens/s | filled | conversation tokens/s | vs sigma-pretrain | learned tokens/s |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for T in $LENGTHS; do
    rows="--seq-len $T --micro-batch $((4096 / T)) --batch-tokens 4096 --steps $STEPS --threads $THREADS --device cpu"
    "$bin/sigma-pretrain" -q --preset micro --data "$sft/shards" --out "$out/pretrain-$T" $rows --lr 5e-3 --warmup 20 \
        --balance top1-lbl --balance-coef 0.01 --eval-every 0 --metrics "$out/pretrain-$T.jsonl"
    P=$(median .tokens_per_s "$out/pretrain-$T.jsonl")
    printf '| %s x %s | sigma-pretrain (the facts, documents packed) | %s | 100%% | %s | 1x | %s |\n' "$((4096 / T))" "$T" "$P" "$P" "$P"
    for pack in pack no-pack; do
        "$bin/sigma-sft" --init "$sft/base" -t "$sft/tok.txt" --data "$sft/data/train.jsonl" --out "$out/$pack-$T" $rows \
            --"$pack" --lr 1e-3 --eval-every 0 --metrics "$out/$pack-$T.jsonl" 2>"$out/$pack-$T.log"
        S=$(median .tokens_per_s "$out/$pack-$T.jsonl")
        L=$(median '.learned * .tokens_per_s / 4096' "$out/$pack-$T.jsonl")
        fill=$(sed -n 's/.*rows of [0-9]* (\([0-9]*\)% filled).*/\1/p' "$out/$pack-$T.log" | head -n 1)
        C=$(echo "$S * $fill / 100" | bc)
        printf '| %s x %s | sigma-sft --%s | %s | %s%% | %s | %.2fx | %s |\n' "$((4096 / T))" "$T" "$pack" "$S" "$fill" "$C" \
            "$(echo "$C / $P" | bc -l)" "$L"
    done
done
