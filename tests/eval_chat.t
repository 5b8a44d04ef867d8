#!/bin/sh
# sigma-eval chat on a tiny model fine-tuned with sigma-sft: the assistant
# loss is the one sigma-sft's validation reports for the same held-out
# conversations; replies the model was overfit to match exactly; the
# prompt is the chat template's; bad input names its file and line.
. "$(dirname "$0")/lib.sh"
ev() { sigma-eval chat -j 1 "$@"; }

# Questions and answers; the model learns the first four, the others are held out.
python3 - "$T" <<'PY'
import json, sys
d = sys.argv[1]
qa = [("What does the command `ls` do?", "list directory contents"),
      ("What does the command `cat` do?", "concatenate files and print on the standard output"),
      ("What does the command `grep` do?", "print lines that match patterns"),
      ("What does the word 'dog' mean?", "a domestic animal that barks"),
      ("What does the word 'tree' mean?", "a tall perennial woody plant"),
      ("What does the command `cp` do?", "copy files and directories")]
msgs = lambda q, a: {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
with open(d + "/train.jsonl", "w") as f:
    for _ in range(20):
        for q, a in qa[:4]: f.write(json.dumps(msgs(q, a)) + "\n")
with open(d + "/learned.jsonl", "w") as f:
    for q, a in qa[:4]: f.write(json.dumps(msgs(q, a)) + "\n")
with open(d + "/val.jsonl", "w") as f:
    for q, a in qa[:2]: f.write(json.dumps({"prompt": q, "completion": a}) + "\n")
    f.write(json.dumps({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": qa[4][0]},
                                     {"role": "assistant", "content": qa[4][1]}, {"role": "user", "content": qa[5][0]},
                                     {"role": "assistant", "content": qa[5][1]}]}) + "\n")
with open(d + "/text", "w") as f:
    for _ in range(30):
        for q, a in qa: f.write(q + " " + a + ".\n")
PY
sigma-tokenize train -q --chat --vocab-size 400 --pattern gpt2 -o "$T/tok" "$T/text" 2>/dev/null
sigma-tokenize train -q --vocab-size 400 --pattern gpt2 -o "$T/plain.tok" "$T/text" 2>/dev/null
sigma-tokenize encode -q -t "$T/tok" --lines "$T/text" | sigma-shard -q -o "$T/shards" --val-fraction 0
sigma-pretrain -q --preset test --data "$T/shards" --out "$T/base" --seq-len 64 --micro-batch 8 --batch-tokens 512 \
    --steps 30 --lr 1e-2 --warmup 3 --eval-every 0 -j 1
# rows of 128 hold every held-out conversation whole, as sigma-eval's window (the model's 256) does
sigma-sft -q --init "$T/base" -t "$T/tok" --data "$T/train.jsonl" --val-data "$T/val.jsonl" --out "$T/sft" --seq-len 128 --lr 1e-2 \
    --epochs 20 --micro-batch 4 --batch-tokens 256 --eval-every 1000 --eval-batches 100 --metrics "$T/m.jsonl" -j 1

# ---- the loss against sigma-sft's validation --------------------------------------------------
ev "$T/sft" -t "$T/tok" --data "$T/val.jsonl" --per-example "$T/val.ex" >"$T/val.json" 2>"$T/val.err"
ok "runs" test -s "$T/val.ex"
ok "the loss is sigma-sft's validation loss of the final checkpoint (1e-5 relative), over as many tokens" \
    jq -n -e --slurpfile a "$T/val.json" --slurpfile m "$T/m.jsonl" '($m | map(select(.type == "val")) | last) as $v |
        $a[0].tokens == $v.val_tokens and (($a[0].loss - $v.val_loss) | fabs) <= 1e-5 * $v.val_loss'
ev "$T/sft" -t "$T/tok" --data "$T/val.jsonl" --batch 1 >"$T/b1.json" 2>/dev/null
ok "one conversation a forward: the same loss" jq -n -e --slurpfile a "$T/b1.json" --slurpfile b "$T/val.json" \
    '(($a[0].loss - $b[0].loss) | fabs) <= 1e-6 * $b[0].loss'
ok "the summary: n, loss, tokens, exact, f1 and their standard errors" jq -e '.task == "chat" and .n == 3 and
    (.loss > 0) and .tokens > 0 and has("exact") and has("f1") and has("exact_stderr") and has("f1_stderr") and .max_tokens == 64' \
    "$T/val.json"
is "a line per conversation" "$(wc -l <"$T/val.ex" | tr -d ' ')" 3
ok "each with its loss, prompt, reply, reference and scores" jq -s -e 'all(has("loss") and has("tokens") and
    has("prompt_tokens") and has("reply") and has("reference") and has("ended") and has("exact") and has("f1"))' "$T/val.ex"
is "the reference is the last assistant message" "$(jq -r 'select(.index == 2) | .reference' "$T/val.ex")" \
    "copy files and directories"
sed -n 3p "$T/val.jsonl" | jq -c '{messages: .messages[:-1]}' >"$T/before.json"
is "its prompt: the messages before it and the generation prompt, as chat_encode makes them" \
    "$(jq 'select(.index == 2) | .prompt_tokens' "$T/val.ex")" "$(chat_ids "$T/tok" --generation-prompt <"$T/before.json" | wc -l | tr -d ' ')"
ok "the summary's means are the lines'" jq -n -e --slurpfile a "$T/val.json" --slurpfile e "$T/val.ex" '
    (($e | map(.f1) | add / length) - $a[0].f1 | fabs) < 1e-12 and ($e | map(if .exact then 1 else 0 end) | add / length) == $a[0].exact'

# ---- fine-tuning shows ----------------------------------------------------------------------------
ev "$T/sft" -t "$T/tok" --data "$T/learned.jsonl" --per-example "$T/learned.ex" >"$T/learned.json" 2>/dev/null
ok "replies the model was overfit to match exactly (exact 1, f1 1), each ended by <|im_end|>" \
    jq -e '.exact == 1 and .f1 == 1 and .ended == .n' "$T/learned.json"
ev "$T/base" -t "$T/tok" --data "$T/learned.jsonl" >"$T/base.json" 2>/dev/null
ok "the base model's assistant loss on them is higher, its exact match lower" jq -n -e --slurpfile a "$T/base.json" \
    --slurpfile b "$T/learned.json" '$a[0].loss > $b[0].loss and $a[0].exact < $b[0].exact and $a[0].tokens == $b[0].tokens'
ev "$T/sft" -t "$T/tok" --data "$T/learned.jsonl" --max-tokens 2 --per-example "$T/short.ex" >"$T/short.json" 2>/dev/null
ok "--max-tokens 2: replies of two tokens, none ended by the model" jq -s -e 'all(.reply_tokens == 2 and (.ended | not))' "$T/short.ex"
ok "and said so" jq -e '.ended == 0 and .max_tokens == 2' "$T/short.json"
ev "$T/sft" -t "$T/tok" --data "$T/val.jsonl" --window 24 >"$T/w.json" 2>/dev/null
ok "a window shorter than a conversation: cut and counted" jq -e '.truncated > 0 and .n == 3' "$T/w.json"

# ---- bad input ----------------------------------------------------------------------------------
head -n 1 "$T/val.jsonl" >"$T/bad.jsonl"; echo 'not json' >>"$T/bad.jsonl"
echo '{"messages": [{"role": "robot", "content": "x"}]}' >>"$T/bad.jsonl"
echo '{"messages": [{"role": "user", "content": "no reply"}]}' >>"$T/bad.jsonl"
fails_with "a line that is not JSON names the file and line" 1 "bad.jsonl, line 2: not JSON" ev "$T/sft" -t "$T/tok" \
    --data "$T/bad.jsonl" --per-example "$T/none.ex"
ok "and nothing is written under the output's name" test ! -e "$T/none.ex"
sed -i 2d "$T/bad.jsonl"
fails_with "an unknown role names the file and line" 1 "bad.jsonl, line 2: message 1: unknown role \"robot\"" \
    ev "$T/sft" -t "$T/tok" --data "$T/bad.jsonl"
ev "$T/sft" -t "$T/tok" --data "$T/bad.jsonl" --skip-bad >"$T/skip.json" 2>/dev/null
ok "--skip-bad skips and counts it; a conversation without a reply is skipped and counted" \
    jq -e '.n == 1 and .skipped == 1 and .no_assistant == 1' "$T/skip.json"
fails_with "a tokenizer without the chat tokens says how to make one" 1 "no <\|im_start\|> and <\|im_end\|> tokens.*sigma-tokenize train --chat" \
    ev "$T/sft" -t "$T/plain.tok" --data "$T/val.jsonl"
fails_with "chat without --data" 2 "chat needs its conversations" ev "$T/sft" -t "$T/tok"
fails_with "chat takes no FILE" 2 "chat reads its conversations from --data" ev "$T/sft" -t "$T/tok" --data "$T/val.jsonl" "$T/val.jsonl"
fails_with "an option of loss given to chat is refused" 2 "--stride is an option of loss, not of chat" \
    ev "$T/sft" -t "$T/tok" --data "$T/val.jsonl" --stride 4
fails_with "--max-tokens is chat's" 2 "--max-tokens is an option of chat, not of loss" \
    sigma-eval loss "$T/sft" -t "$T/tok" --max-tokens 4 "$T/text"

# ---- the CUDA core (on the CPU emulation of CUDA, where built) -------------------------
emu=${SIGMA_TESTBIN:-}/sigma-eval-emu
if [ -x "$emu" ]; then
    "$emu" chat -q "$T/sft" -t "$T/tok" --data "$T/learned.jsonl" --device cuda >"$T/gpu.json"
    ok "on the (emulated) GPU, bf16: the loss within 5% of the CPU's (near 0 here: 0.01 absolute), the replies the same" \
        jq -n -e --slurpfile a "$T/gpu.json" --slurpfile b "$T/learned.json" \
        '(($a[0].loss - $b[0].loss) | fabs) <= 0.05 * $b[0].loss + 0.01 and $a[0].exact == $b[0].exact'
else
    skip "the emulated GPU" "no sigma-eval-emu here (it needs the CUDA headers, and is left out of the sanitizer build)"
fi
done_testing
