#!/bin/sh
# sigma-sft: a pretrained model fine-tuned on chat data. The run's
# checkpoints are sigma-pretrain's format with an sft object; the loss is
# on the assistant's tokens (counted), packing changes nothing but speed,
# the validation loss falls on conversations it learns, a run resumes bit
# for bit after SIGKILL, --add-chat-tokens grows a base model's vocabulary
# (new rows at the mean), the emulated GPU (both attention paths) follows
# the CPU, and bad input is refused with its file and line.
. "$(dirname "$0")/lib.sh"

cat "$SIGMA_ROOT"/README.md "$SIGMA_ROOT"/man/*.1 >"$T/text"
sigma-tokenize train -q --chat --vocab-size 600 --pattern o200k -o "$T/chat.tok" "$T/text"
sigma-tokenize train -q --vocab-size 600 --pattern o200k -o "$T/plain.tok" "$T/text"
for k in chat plain; do
    sigma-tokenize encode -q -t "$T/$k.tok" --lines "$T/text" | sigma-shard -q -o "$T/shards-$k" --val-fraction 0
    sigma-pretrain -q --preset test --data "$T/shards-$k" --out "$T/base-$k" --seq-len 64 --micro-batch 8 --batch-tokens 512 \
        --steps 20 --eval-every 0 -j1 2>/dev/null
done
# 40 conversations made of the manual's lines: a question, and its reply
awk 'length($0) > 20 && length($0) < 80 && !/^\./ { gsub(/\\|"/, ""); print }' "$SIGMA_ROOT"/man/sigma-pretrain.1 | head -n 80 |
    awk 'NR % 2 { q = $0; next } { n++
        if (n % 2) printf "{\"prompt\": \"%s\", \"completion\": \"%s\"}\n", q, $0
        else printf "{\"messages\": [{\"role\": \"system\", \"content\": \"Answer from the manual.\"}, {\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": \"%s\"}]}\n", q, $0 }' >"$T/chat.jsonl"
head -n 8 "$T/chat.jsonl" >"$T/val.jsonl"
is "the test data: 40 conversations" "$(wc -l <"$T/chat.jsonl" | tr -d ' ')" 40

sft() {   # out [options]: a short fine-tune of base-chat
    out=$1; shift
    sigma-sft -q --init "$T/base-chat" -t "$T/chat.tok" --data "$T/chat.jsonl" --out "$out" --metrics "$out.jsonl" \
        --seq-len 64 --micro-batch 4 --batch-tokens 512 --save-every 4 -j1 "$@"
}
losses() { jq -c 'select(.type != "event") | del(.tokens_per_s)' "$1"; }

# ---- a run and what it writes ---------------------------------------------------------------
ok "a fine-tune of 12 steps on 40 conversations, validated on 8 of them" sft "$T/a" --val-data "$T/val.jsonl" --steps 12 --eval-every 6 --lr 3e-3
cfg=$T/a/step-00000012/config.json
is "its checkpoints say sigma-sft made them" "$(jq -r '.created_by | split(" ")[0]' "$cfg")" sigma-sft
is "and hold the sft object" "$(jq -c '.sft | [.template, .conversations, .val_conversations]' "$cfg")" '["chatml",40,8]'
is "with the data's checksum" "$(jq -r .sft.data_xxh3 "$cfg")" "$(jq -r .sft.data_xxh3 "$T/a/step-00000004/config.json")"
is "and the fine-tuning settings in training" "$(jq -c '.training | [.train_on, .pack, .long, .schedule]' "$cfg")" '["assistant",true,"cut","cosine"]'
is "the model is the base's" "$(jq -c .model "$cfg")" "$(jq -c .model "$T/base-chat/step-00000020/config.json")"
ok "every step reports its targets with loss" jq -e -s '[.[] | select(.type == "train")] | length == 12 and all(.learned > 0)' "$T/a.jsonl"
ok "the validation loss falls on conversations it learns" \
    jq -e -s '[.[] | select(.type == "val")] | length == 2 and .[1].val_loss < .[0].val_loss' "$T/a.jsonl"
ok "  and is a mean over their assistant tokens" jq -e -s '[.[] | select(.type == "val")] | all(.val_tokens > 0 and .val_tokens < 8 * 64)' "$T/a.jsonl"
ok "sigma-eval reads the checkpoint" sh -c "sigma-eval loss -q '$T/a' -t '$T/chat.tok' --text '$T/text' | jq -e '.loss > 0'"

# ---- what carries loss ------------------------------------------------------------------------
ok "--train-on all" sft "$T/all" --train-on all --steps 1 --val-fraction 0
sum_tokens() { jq -s '[.[] | select(.type == "train")][0].learned' "$1"; }
learned_all=$(jq .sft.learned_tokens_per_epoch "$T/all/step-00000001/config.json")
ok "assistant-only" sft "$T/asst" --steps 1 --val-fraction 0
learned_asst=$(jq .sft.learned_tokens_per_epoch "$T/asst/step-00000001/config.json")
ok "the assistant's tokens are a part of all of them ($learned_asst of $learned_all)" test "$learned_asst" -gt 0 -a "$learned_asst" -lt "$learned_all"

# ---- packing ----------------------------------------------------------------------------------
ok "packed rows of 128" sft "$T/p128" --seq-len 128 --steps 1 --val-fraction 0
ok "--no-pack" sft "$T/np" --seq-len 128 --no-pack --steps 1 --val-fraction 0
is "packing changes the rows, not what is learned" "$(jq .sft.learned_tokens_per_epoch "$T/np/step-00000001/config.json")" \
    "$(jq .sft.learned_tokens_per_epoch "$T/p128/step-00000001/config.json")"
ok "  in fewer rows" test "$(jq .sft.rows "$T/p128/step-00000001/config.json")" -lt "$(jq .sft.rows "$T/np/step-00000001/config.json")"
{ cat "$T/chat.jsonl"; printf '{"prompt": "and the whole manual?", "completion": "%s"}\n' "$(head -c 3000 "$T/text" | tr -d '\\"\n')"; } >"$T/long.jsonl"
sigma-sft --init "$T/base-chat" -t "$T/chat.tok" --data "$T/long.jsonl" --out "$T/long" --seq-len 64 --micro-batch 4 \
    --batch-tokens 256 --steps 1 --long drop -j1 2>"$T/long.err"
ok "--long drop: conversations longer than a row are left out, counted" grep -qE " [1-9][0-9]* longer than a row dropped" "$T/long.err"

# ---- exact resume -----------------------------------------------------------------------------
ok "an uninterrupted run of 3 epochs" sft "$T/full" --val-fraction 0.1
steps=$(jq -s '[.[] | select(.type == "train")] | length' "$T/full.jsonl")
ok "its length comes from --epochs (3 x 36 conversations / 8 rows a step: $steps steps)" test "$steps" -ge 12
sigma-sft -q --init "$T/base-chat" -t "$T/chat.tok" --data "$T/chat.jsonl" --out "$T/k" --metrics "$T/k.jsonl" \
    --seq-len 64 --micro-batch 4 --batch-tokens 512 --save-every 4 -j1 --val-fraction 0.1 &
pid=$!
while [ ! -f "$T/k/latest" ] && kill -0 $pid 2>/dev/null; do sleep 0.02; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
last=$(printf 'step-%08d' "$steps")
ok "it was killed before its end (at $(cat "$T/k/latest"))" test "$(cat "$T/k/latest")" != "$last"
ok "killed (SIGKILL) after its first checkpoint, then --resume repeating none of its settings" \
    sigma-sft -q -t "$T/chat.tok" --data "$T/chat.jsonl" --out "$T/k" --metrics "$T/k.jsonl" --resume -j1
is "the same losses and learning rates, bit for bit" "$(losses "$T/k.jsonl" | md5sum)" "$(losses "$T/full.jsonl" | md5sum)"
is "and the same weights" "$(md5sum <"$T/k/$last/model.safetensors")" "$(md5sum <"$T/full/$last/model.safetensors")"
fails_with "--resume on other data is refused" 1 "other data than" \
    sigma-sft -q -t "$T/chat.tok" --data "$T/val.jsonl" --out "$T/k" --resume --steps 40
fails_with "--resume with another --train-on is refused" 1 "made with --train-on assistant" \
    sigma-sft -q -t "$T/chat.tok" --data "$T/chat.jsonl" --out "$T/k" --resume --train-on all --steps 40

# ---- a base model without the chat tokens -----------------------------------------------------
fails_with "a tokenizer without the chat tokens says how to get them" 1 "add-chat-tokens" \
    sigma-sft -q --init "$T/base-plain" -t "$T/plain.tok" --data "$T/chat.jsonl" --out "$T/x"
ok "--add-chat-tokens" sigma-sft -q --init "$T/base-plain" -t "$T/plain.tok" --add-chat-tokens --data "$T/chat.jsonl" \
    --out "$T/grow" --seq-len 64 --micro-batch 4 --batch-tokens 256 --steps 1 --lr 0 --min-lr 0 -j1
is "the run keeps the grown tokenizer" "$(grep -c '^#special 60[01] <|im_' "$T/grow/tokenizer")" 2
is "the vocabulary grew by two rows" "$(jq .model.vocab_size "$T/grow/step-00000001/config.json")" \
    "$(($(jq .model.vocab_size "$T/base-plain/step-00000020/config.json") + 2))"
ok "the new rows start at the mean of the old ones (lr 0 keeps them)" python3 - "$T/grow/step-00000001/model.safetensors" <<'PY'
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); base = 8 + n
def rows(name):
    t = h[name]; V, d = t["shape"]; f.seek(base + t["data_offsets"][0])
    w = struct.unpack("<%df" % (V * d), f.read(V * d * 4)); return [w[r * d:(r + 1) * d] for r in range(V)]
for name in ("model.embed_tokens.weight", "lm_head.weight"):
    if name not in h: continue
    w = rows(name); V = len(w); old = w[:V - 2]
    mean = [sum(c) / len(old) for c in zip(*old)]
    for r in (V - 2, V - 1):
        assert all(abs(a - b) <= 1e-6 + 1e-5 * abs(b) for a, b in zip(w[r], mean)), (name, r)
PY
ok "sigma-export takes the sft run with its tokenizer" sigma-export -q "$T/grow" -t "$T/grow/tokenizer" -o "$T/grow-hf"
is "  as a chat model" "$(jq -r .eos_token "$T/grow-hf/tokenizer_config.json")" "<|im_end|>"
fails_with "--add-chat-tokens on a tokenizer that has them is refused" 1 "already has the chat tokens" \
    sigma-sft -q --init "$T/base-chat" -t "$T/chat.tok" --add-chat-tokens --data "$T/chat.jsonl" --out "$T/x"
fails_with "another tokenizer than the checkpoint's is refused, both fingerprints named" 1 "made with another tokenizer: [0-9a-f]{32}.* differs from .*chat.tok's [0-9a-f]{32}" \
    sigma-sft -q --init "$T/base-plain" -t "$T/chat.tok" --data "$T/chat.jsonl" --out "$T/x"

# ---- bad input --------------------------------------------------------------------------------
printf '{"prompt": "a", "completion": "b"}\n{"messages": [{"role": "robot", "content": "x"}]}\n' >"$T/role.jsonl"
fails_with "an unknown role: the file and line" 1 "role.jsonl, line 2: .*unknown role \"robot\"" \
    sigma-sft -q --init "$T/base-chat" -t "$T/chat.tok" --data "$T/role.jsonl" --out "$T/x"
printf '{"messages": [{"role": "user", "content": 7}]}\n' >"$T/content.jsonl"
fails_with "a content that is not a string: the file and line" 1 "content.jsonl, line 1: .*not a string" \
    sigma-sft -q --init "$T/base-chat" -t "$T/chat.tok" --data "$T/content.jsonl" --out "$T/x"
{ cat "$T/role.jsonl" "$T/content.jsonl"; echo '[1, 2]'; echo '{"messages": [{"role": "user", "content": "only a question"}]}'; } >"$T/mixed.jsonl"
sigma-sft --init "$T/base-chat" -t "$T/chat.tok" --data "$T/mixed.jsonl" --out "$T/skip" --seq-len 64 --micro-batch 1 \
    --batch-tokens 64 --steps 1 --val-fraction 0 --skip-bad -j1 2>"$T/skip.err"
ok "--skip-bad skips and counts bad lines and those without an assistant turn" \
    grep -q "skipped 1 without an assistant turn, 3 bad lines" "$T/skip.err"
: >"$T/empty.jsonl"
fails_with "an empty file: nothing to learn" 1 "empty.jsonl: no conversation to learn from" \
    sigma-sft -q --init "$T/base-chat" -t "$T/chat.tok" --data "$T/empty.jsonl" --out "$T/x"
fails_with "--val-data and --val-fraction together" 2 "not both" \
    sigma-sft -q --init "$T/base-chat" -t "$T/chat.tok" --data "$T/chat.jsonl" --val-data "$T/val.jsonl" --val-fraction 0.1 --out "$T/x"
fails_with "no --init" 2 "missing --init" sigma-sft -q -t "$T/chat.tok" --data "$T/chat.jsonl" --out "$T/x"
fails_with "--train-on something else" 2 "expected assistant or all" sigma-sft --train-on user
ok "nothing was left under a refused run's name" test ! -e "$T/x/latest"

# ---- the emulated GPU -------------------------------------------------------------------------
emu=${SIGMA_TESTBIN:-}/sigma-sft-emu
if [ -x "$emu" ]; then
    gpu() {   # out [options]: 3 packed steps on the emulated GPU
        out=$1; shift
        "$emu" -q --init "$T/base-chat" -t "$T/chat.tok" --data "$T/chat.jsonl" --out "$out" --metrics "$out.jsonl" \
            --seq-len 64 --micro-batch 4 --batch-tokens 256 --steps 3 --val-fraction 0 --eval-every 0 "$@"
    }
    close() {   # a.jsonl b.jsonl: every step's loss within 0.5%
        jq -s -e --slurpfile b "$2" '[.[] | select(.type == "train")] as $a | [$b[] | select(.type == "train")] as $b |
            ($a | length) == ($b | length) and ([range($a | length)] | all(($a[.].loss - $b[.].loss | fabs) < 0.005 * $b[.].loss))' "$1" >/dev/null
    }
    ok "3 packed steps on the CPU" gpu "$T/e-cpu" --device cpu
    ok "on the emulated GPU, cuBLAS attention" gpu "$T/e-gpu" --device cuda
    ok "  the losses follow the CPU's (within 0.5%)" close "$T/e-gpu.jsonl" "$T/e-cpu.jsonl"
    export SIGMA_ATTENTION=flash SIGMA_EXPERTS=grouped
    ok "on the emulated GPU, the fused attention and grouped experts" gpu "$T/e-flash" --device cuda
    ok "  the losses follow the CPU's (within 0.5%)" close "$T/e-flash.jsonl" "$T/e-cpu.jsonl"
else
    skip "the emulated GPU" "no emulated build here (it needs the CUDA headers, and is left out of the sanitizer build)"
fi
done_testing
