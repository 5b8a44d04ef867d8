#!/bin/sh
# sigma-eval against an independent reference: a small model that sigma
# trained, exported and scored with transformers' Qwen3MoeForCausalLM by
# lm-evaluation-harness's rules (tests/make_eval_fixtures.py made
# tests/fixtures/eval). Every item's log-likelihoods, every prediction, the
# accuracies and the loss over disjoint and sliding windows must agree;
# then the readers' bad input, truncation, sampling and the output.
. "$(dirname "$0")/lib.sh"
FIX=$SIGMA_ROOT/tests/fixtures/eval
MODEL=$FIX/model TOK=$FIX/tok.txt
ev() { sigma-eval "$@" -j 1; }

# ---- the reference ----------------------------------------------------------------------------
# close a b: |a - b| <= 1e-4 |b| (and 1e-6 absolute, for values near 0)
close='def close(a; b): ((a - b) | fabs) <= 1e-4 * (b | fabs) + 1e-6;'
for task in choice piqa lambada hellaswag arc winogrande; do
    file=$FIX/$task.jsonl; labels= ref=$task
    [ "$task" = choice ] && file=$FIX/generic.jsonl ref=generic
    [ "$task" = piqa ] && labels="--labels $FIX/piqa-labels.lst"
    ev "$task" "$MODEL" -t "$TOK" "$file" $labels --per-example "$T/$task.ex" >"$T/$task.json" 2>"$T/$task.err"
    ok "$task: runs" test -s "$T/$task.ex"
    ok "$task: every item's log-likelihoods equal transformers' (1e-4)" jq -n -e --slurpfile a "$T/$task.ex" \
        --slurpfile b "$FIX/expected/$ref.jsonl" "$close"'
        ($a | length) == ($b | length) and ([range($a | length) as $i | [range($a[$i].ll | length) as $c |
            close($a[$i].ll[$c]; $b[$i].ll[$c])] | all] | all)'
    ok "$task: every prediction and greedy flag is the same" jq -n -e --slurpfile a "$T/$task.ex" --slurpfile b "$FIX/expected/$ref.jsonl" '
        [range($a | length) as $i | $a[$i].pred == $b[$i].pred and $a[$i].pred_norm == $b[$i].pred_norm and
            $a[$i].is_greedy == $b[$i].is_greedy and $a[$i].truncated == $b[$i].truncated and $a[$i].label == $b[$i].label] | all'
    ok "$task: acc, acc_norm, their standard errors, truncations as the reference's" jq -n -e --slurpfile a "$T/$task.json" \
        --slurpfile s "$FIX/expected/summary.json" --arg t "$ref" "$close"'
        $a[0] as $x | $s[0][$t] as $y | $x.n == $y.n and close($x.acc; $y.acc) and $x.truncated == $y.truncated and
        (($y.acc_stderr == null) or close($x.acc_stderr; $y.acc_stderr)) and
        (($y.acc_norm == null) or (close($x.acc_norm; $y.acc_norm) and close($x.acc_norm_stderr; $y.acc_norm_stderr))) and
        (($y.perplexity == null) or close($x.perplexity; $y.perplexity))'
done
ok "some items were cut from the left and counted" jq -e '.truncated > 0' "$T/choice.json"
for stride in 128 32; do
    ev loss "$MODEL" -t "$TOK" --stride $stride "$FIX/loss.txt" >"$T/loss$stride.json" 2>/dev/null
    ok "loss over one document, stride $stride: tokens, bytes, nll, bits per byte as the reference's" jq -n -e \
        --slurpfile a "$T/loss$stride.json" --slurpfile b "$FIX/expected/loss.json" --argjson s $stride "$close"'
        $a[0] as $x | ($b[0] | if type == "array" then map(select(.stride == $s))[0] else .[($s | tostring)] end) as $y |
        $x.tokens == $y.tokens and $x.bytes == $y.bytes and close($x.nll_sum; $y.nll_sum) and
        close($x.bits_per_byte; $y.bits_per_byte) and close($x.perplexity; $y.perplexity)'
done
ok "sliding windows predict the same tokens as disjoint ones, with more context (a lower loss)" jq -n -e \
    --slurpfile a "$T/loss32.json" --slurpfile b "$T/loss128.json" '$a[0].tokens == $b[0].tokens and $a[0].loss < $b[0].loss'
ok "the load report has every layer" jq -e '(.load | length) == 2 and (.load[0] | has("load_max") and has("load_min") and
    has("load_entropy") and has("idle_experts") and has("top1_p") and has("routing_entropy"))' "$T/loss128.json"

# ---- the CUDA core (on the CPU emulation of CUDA, where built) -------------------------
emu=${SIGMA_TESTBIN:-}/sigma-eval-emu
if [ -x "$emu" ]; then
    "$emu" piqa -q "$MODEL" -t "$TOK" "$FIX/piqa.jsonl" --labels "$FIX/piqa-labels.lst" --limit 10 --device cuda \
        --per-example "$T/gpu.ex" >/dev/null
    ok "on the (emulated) GPU, bf16: every log-likelihood within 2% of the CPU's" jq -n -e --slurpfile a "$T/gpu.ex" \
        --slurpfile b "$T/piqa.ex" '[range($a | length) as $i | [range(2) as $c |
            (($a[$i].ll[$c] - $b[$i].ll[$c]) | fabs) <= 0.02 * ($b[$i].ll[$c] | fabs)] | all] | all'
    "$emu" loss -q "$MODEL" -t "$TOK" --device cuda "$FIX/loss.txt" >"$T/gpuloss.json"
    ok "and the loss within 1%, with each layer's load" jq -n -e --slurpfile a "$T/gpuloss.json" --slurpfile b "$T/loss128.json" \
        '(($a[0].loss - $b[0].loss) | fabs) < 0.01 * $b[0].loss and ($a[0].load | length) == 2 and $a[0].load[0].top1_p > 0'
else
    skip "the emulated GPU" "no sigma-eval-emu here (it needs the CUDA headers, and is left out of the sanitizer build)"
    skip "the emulated GPU's loss" "no sigma-eval-emu"
fi

# ---- a run trained with the aux-loss-free bias routes with it at evaluation too ------------------
sigma-tokenize train -q --vocab-size 300 --pattern gpt2 -o "$T/b.tok.txt" "$FIX/loss.txt"
sigma-tokenize encode -q -t "$T/b.tok.txt" --lines "$FIX/loss.txt" | sigma-shard -q -o "$T/bshards" --val-fraction 0
sigma-pretrain -q --preset test --data "$T/bshards" --out "$T/brun" --seq-len 32 --micro-batch 4 --batch-tokens 128 \
    --steps 20 --eval-every 0 --balance bias --bias-rate 0.05
mkdir "$T/nobias" && cp "$T/brun/step-00000020/config.json" "$T/brun/step-00000020/model.safetensors" "$T/nobias/"
with=$(sigma-eval loss -q -j 1 "$T/brun" -t "$T/b.tok.txt" --data "$T/bshards" --split train 2>"$T/b.err" | jq .loss)
without=$(sigma-eval loss -q -j 1 "$T/nobias" -t "$T/b.tok.txt" --data "$T/bshards" --split train 2>>"$T/b.err" | jq .loss)
ok "the routing bias is used: the same weights without it score otherwise ($with, $without)" \
    sh -c "[ -n '$with' ] && [ -n '$without' ] && [ '$with' != '$without' ]"
sigma-export "$T/brun" -o "$T/bexport" 2>"$T/bexport.err"
ok "sigma-export warns that Qwen3-MoE has no place for it" grep -q "aux-loss-free routing bias" "$T/bexport.err"

# ---- batching changes no result -----------------------------------------------------------
ev piqa "$MODEL" -t "$TOK" "$FIX/piqa.jsonl" --labels "$FIX/piqa-labels.lst" --batch 1 --per-example "$T/b1.ex" >/dev/null 2>&1
ok "one request a forward gives the same log-likelihoods as batches of 8" jq -n -e --slurpfile a "$T/b1.ex" \
    --slurpfile b "$T/piqa.ex" "$close"'[range($a | length) as $i | [range(2) as $c | close($a[$i].ll[$c]; $b[$i].ll[$c])] | all] | all'

# ---- sampling ---------------------------------------------------------------------------------
ev arc "$MODEL" -t "$TOK" "$FIX/arc.jsonl" --limit 7 --seed 5 --per-example "$T/s1" >"$T/s1.json" 2>/dev/null
ev arc "$MODEL" -t "$TOK" "$FIX/arc.jsonl" --limit 7 --seed 5 --per-example "$T/s2" >/dev/null 2>&1
ok "--limit with --seed: that many items" jq -e '.n == 7' "$T/s1.json"
ok "the same sample again" cmp -s "$T/s1" "$T/s2"
ok "kept in file order" jq -s -e 'map(.line) | . == sort' "$T/s1"
ev arc "$MODEL" -t "$TOK" "$FIX/arc.jsonl" --limit 3 --per-example "$T/first3" >/dev/null 2>&1
is "--limit alone: the first items" "$(jq -s -c 'map(.line)' "$T/first3")" "$(head -n 3 "$FIX/expected/arc.jsonl" | jq -s -c 'map(.index + 1)')"

# ---- bad input ----------------------------------------------------------------------------------
head -n 2 "$FIX/generic.jsonl" >"$T/bad.jsonl"
echo '{"context": "x", "choices": ["a", "b"], "label": 2}' >>"$T/bad.jsonl"
echo 'not json' >>"$T/bad.jsonl"
echo '{"context": "x", "choices": [], "label": 0}' >>"$T/bad.jsonl"
fails_with "a label out of range names the file and line" 1 "bad.jsonl, line 3: \"label\" is not an index" \
    ev choice "$MODEL" -t "$TOK" "$T/bad.jsonl" --per-example "$T/none.ex"
ok "and nothing is written under the output's name" test ! -e "$T/none.ex"
head -n 2 "$FIX/generic.jsonl" >"$T/bad2.jsonl"; echo 'not json' >>"$T/bad2.jsonl"
fails_with "a line that is not JSON" 1 "bad2.jsonl, line 3: not JSON" ev choice "$MODEL" -t "$TOK" "$T/bad2.jsonl"
head -n 2 "$FIX/generic.jsonl" >"$T/bad3.jsonl"; echo '{"context": "x", "choices": [], "label": 0}' >>"$T/bad3.jsonl"
fails_with "empty choices" 1 "bad3.jsonl, line 3: \"choices\" is not a non-empty array" ev choice "$MODEL" -t "$TOK" "$T/bad3.jsonl"
ev choice "$MODEL" -t "$TOK" "$T/bad.jsonl" --skip-bad >"$T/skip.json" 2>/dev/null
ok "--skip-bad skips and counts them" jq -e '.n == 2 and .skipped == 3' "$T/skip.json"
head -n 3 "$FIX/piqa-labels.lst" >"$T/short.lst"
fails_with "PIQA labels not aligned with the items" 1 "must be aligned line by line|more items than" \
    ev piqa "$MODEL" -t "$TOK" "$FIX/piqa.jsonl" --labels "$T/short.lst"
fails_with "piqa without its labels is a usage error" 2 "piqa needs its labels file" ev piqa "$MODEL" -t "$TOK" "$FIX/piqa.jsonl"
echo '{"sentence": "no blank here", "option1": "a", "option2": "b", "answer": "1"}' >"$T/wino.jsonl"
fails_with "a WinoGrande sentence without a blank" 1 "wino.jsonl, line 1: the sentence has no \"_\"" \
    ev winogrande "$MODEL" -t "$TOK" "$T/wino.jsonl"
echo '{"question": {"stem": "q", "choices": [{"text": "a", "label": "A"}]}, "answerKey": "E"}' >"$T/arcbad.jsonl"
fails_with "an ARC answer key that names no choice" 1 "answerKey \"E\" is none of the choices' labels" \
    ev arc "$MODEL" -t "$TOK" "$T/arcbad.jsonl"
sigma-tokenize train -q --vocab-size 300 --pattern gpt2 -o "$T/other.tok" "$FIX/loss.txt"
fails_with "another tokenizer is refused, naming both" 1 "made with another tokenizer" ev loss "$MODEL" -t "$T/other.tok" "$FIX/loss.txt"
fails_with "an unknown task" 2 "unknown command 'mmlu'" ev mmlu "$MODEL" -t "$TOK" x
fails_with "an option of loss given to a task is refused" 2 "--stride is an option of loss" \
    ev piqa "$MODEL" -t "$TOK" "$FIX/piqa.jsonl" --stride 4
ok "--help" sh -c 'sigma-eval --help | grep -q "usage: sigma-eval loss"'
done_testing
