#!/bin/sh
# sigma-generate beside transformers' generate: prefill and decode tokens per
# second on the CPU, greedy, the same exported model (sigma-export --dtype
# fp32) and the same prompt, THREADS threads each (default 1), alternated,
# best of REPS. Two models, each one optimizer step from its initialisation
# (the speed does not depend on the weights; --keep-going makes both
# generate NEW tokens): the micro preset (the demo's shape) and a 115M
# "small" one (d 512, 8 layers, 32 experts, top-1). sigma's figures are its
# own -v report (the steps' time, after loading); transformers' come from
# bench/generate_hf.py. Needs pip install torch transformers.
#
# Where a GPU is visible, the same on it (sigma-generate --device cuda
# beside transformers in bf16) with the nano preset's shape, and the decode
# as a fraction of HBM bandwidth: the bytes a decode token reads (the active
# weights in bf16: each layer's q, k, v, o and router and top_k experts, and
# the head; and the key-value cache at its mean length, bf16) times tokens
# per second, over HBM (HBM_TBS, default 4.8 TB/s, an H200's).
set -eu
REPS=${REPS:-3} NEW=${NEW:-128} THREADS=${THREADS:-1}
bin=${SIGMA_BIN:-$PWD/bin}
corpus=${SIGMA_DATA:-$PWD/../shared/data}/corpora/tinyshakespeare.txt
[ -f "$corpus" ] || { echo "bench/generate.sh: no $corpus" >&2; exit 1; }
out=bench/out/generate; rm -rf "$out"; mkdir -p "$out"
export OMP_NUM_THREADS=$THREADS
"$bin/sigma-tokenize" train -q --vocab-size 8192 --pattern o200k -o "$out/tok.txt" "$corpus"
"$bin/sigma-tokenize" encode -q -t "$out/tok.txt" --lines "$corpus" | "$bin/sigma-shard" -q -o "$out/shards" --val-fraction 0
head -c 600 "$corpus" >"$out/prompt.txt"   # 143 tokens, 144 with the end-of-text before it
cat >"$out/small.json" <<'JSON'
{"vocab_size": 8192, "d_model": 512, "n_layers": 8, "n_heads": 8, "n_kv_heads": 2, "head_dim": 64,
 "n_experts": 32, "d_expert": 256, "top_k": 1, "max_seq_len": 1024}
JSON
train() {   # name, then the model's options
    name=$1; shift
    "$bin/sigma-pretrain" -q "$@" --data "$out/shards" --out "$out/$name" --seq-len 64 --micro-batch 2 --batch-tokens 128 \
        --steps 1 --eval-every 0 -j "$THREADS"
    "$bin/sigma-export" -q "$out/$name" -t "$out/tok.txt" -o "$out/hf_$name" --dtype fp32
}
train micro --preset micro
train small --config "$out/small.json"
best() { sort -g | tail -n 1; }
field() { sed -n "s/.*$1: [0-9]* tokens in [0-9.]* s, \([0-9.]*\) tokens\/s.*/\1/p"; }
echo "prompt $(wc -c <"$out/prompt.txt") bytes of tinyshakespeare, $NEW new tokens, greedy, $THREADS thread(s), best of $REPS"
echo "| model | prefill tok/s sigma | transformers | ratio | decode tok/s sigma | transformers | ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for m in micro small; do
    sp=""; sd=""; hp=""; hd=""
    for r in $(seq "$REPS"); do
        "$bin/sigma-generate" "$out/$m" -t "$out/tok.txt" -n "$NEW" --keep-going -v -j "$THREADS" "$out/prompt.txt" \
            >/dev/null 2>"$out/sigma.err"
        sp="$sp $(field prefill <"$out/sigma.err")"; sd="$sd $(field decode <"$out/sigma.err")"
        line=$(python3 bench/generate_hf.py "$out/hf_$m" "$out/prompt.txt" "$NEW" "$THREADS" 1 2>/dev/null)
        hp="$hp $(echo "$line" | jq .prefill_tok_s)"; hd="$hd $(echo "$line" | jq .decode_tok_s)"
    done
    SP=$(echo $sp | tr ' ' '\n' | best); SD=$(echo $sd | tr ' ' '\n' | best)
    HP=$(echo $hp | tr ' ' '\n' | best); HD=$(echo $hd | tr ' ' '\n' | best)
    printf '| %s | %.0f | %.0f | %.2fx | %.1f | %.1f | %.2fx |\n' "$m" "$SP" "$HP" "$(echo "$SP / $HP" | bc -l)" "$SD" "$HD" \
        "$(echo "$SD / $HD" | bc -l)"
done
echo "transformers $(echo "$line" | jq -r .transformers), torch $(echo "$line" | jq -r .torch)"

# ---- on a GPU ----------------------------------------------------------------------------------
nvidia-smi >/dev/null 2>&1 || { echo "no GPU visible: the GPU rows are not measured"; exit 0; }
HBM_TBS=${HBM_TBS:-4.8} GNEW=${GNEW:-256}
"$bin/sigma-pretrain" -q --preset nano --device cuda --data "$out/shards" --out "$out/nano" --seq-len 64 --micro-batch 2 \
    --batch-tokens 128 --steps 1 --eval-every 0
"$bin/sigma-export" -q "$out/nano" -t "$out/tok.txt" -o "$out/hf_nano"
# bytes a decode token reads at batch 1, the cache at the mean length of prompt + GNEW / 2
bytes_per_token() {   # config.json, mean cached tokens
    jq -r --argjson len "$2" '.model as $m | ($m.n_heads * $m.head_dim) as $qd | ($m.n_kv_heads * $m.head_dim) as $kvd |
        ([range($m.n_layers)] | map(2 * $qd * $m.d_model + 2 * $kvd * $m.d_model + $m.n_experts * $m.d_model
            + (if ($m.top_k | type) == "array" then $m.top_k[.] else $m.top_k end) * 3 * $m.d_expert * $m.d_model) | add)
        as $layers | 2 * ($layers + $m.vocab_size * $m.d_model) + $m.n_layers * 2 * $kvd * 2 * $len' "$1"
}
pt=$(python3 bench/generate_hf.py "$out/hf_nano" "$out/prompt.txt" 2 1 1 cuda 2>/dev/null | jq .prompt_tokens)
bpt=$(bytes_per_token "$out/nano/$(cat "$out/nano/latest")/config.json" $((pt + GNEW / 2)))
sd=""; hd=""
for r in $(seq "$REPS"); do
    "$bin/sigma-generate" "$out/nano" -t "$out/tok.txt" --device cuda -n "$GNEW" --keep-going -v "$out/prompt.txt" \
        >/dev/null 2>"$out/sigma.err"
    sd="$sd $(field decode <"$out/sigma.err")"
    hd="$hd $(python3 bench/generate_hf.py "$out/hf_nano" "$out/prompt.txt" "$GNEW" 1 1 cuda 2>/dev/null | jq .decode_tok_s)"
done
SD=$(echo $sd | tr ' ' '\n' | best); HD=$(echo $hd | tr ' ' '\n' | best)
echo
echo "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1); nano preset shape, $GNEW new tokens, batch 1, bf16"
echo "decode reads $(echo "$bpt / 1000000" | bc -l | xargs printf '%.1f') MB a token; fraction of $HBM_TBS TB/s = MB x tok/s / $HBM_TBS e12"
echo "| | decode tok/s | of HBM bandwidth |"
echo "| --- | ---: | ---: |"
printf '| sigma-generate --device cuda | %.1f | %.1f%% |\n' "$SD" "$(echo "100 * $bpt * $SD / ($HBM_TBS * 10^12)" | bc -l)"
printf '| transformers generate, bf16 | %.1f | %.1f%% |\n' "$HD" "$(echo "100 * $bpt * $HD / ($HBM_TBS * 10^12)" | bc -l)"
