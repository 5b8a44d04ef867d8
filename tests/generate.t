#!/bin/sh
# sigma-generate: a model trained on a repeated sentence continues it;
# greedy is deterministic, sampling is seeded; the sampling controls, stop
# strings, --stream, the window, JSON Lines batches and --chat do what
# sigma-generate(1) says; bad input and mismatches are refused.
. "$(dirname "$0")/lib.sh"

confident_model
out=$(sigma-generate "$T/run" -t "$T/tok.txt" -p "the quick brown" -n 12 --keep-going)
case $out in " fox jumps over the lazy dog."*) _pass "greedy continuation of a learned sentence: '$out'" ;;
    *) _fail "greedy continuation of a learned sentence: '$out'" ;; esac
is "greedy is deterministic" "$(sigma-generate "$T/run" -t "$T/tok.txt" -p "the quick brown" -n 12 --keep-going)" "$out"
a=$(sigma-generate "$T/run" -t "$T/tok.txt" -p "the" -n 20 --temperature 1.5 --seed 3 --ids | tr '\n' ' ')
b=$(sigma-generate "$T/run" -t "$T/tok.txt" -p "the" -n 20 --temperature 1.5 --seed 3 --ids | tr '\n' ' ')
is "sampling is seeded" "$a" "$b"
ok "--ids writes at most -n ids" test "$(echo "$a" | wc -w)" -le 20
echo "the quick brown" | sigma-generate "$T/run/step-00000060" -t "$T/tok.txt" -n 12 --keep-going >"$T/stdin.out"
is "prompt from stdin, one checkpoint directory" "$(cat "$T/stdin.out")" "$out"
sigma-generate "$T/run" -t "$T/tok.txt" -p "the quick brown" -n 40 >"$T/eot.out" 2>"$T/eot.err"
ok "stopping at end-of-text is said on stderr" grep -q "the model ended the text (end-of-text) after [0-9]* tokens" "$T/eot.err"
is "and the text ends with a newline" "$(tail -c 1 "$T/eot.out" | od -An -c | tr -d ' ')" '\n'
sigma-generate "$T/run" -t "$T/tok.txt" -p "the" -n 3 --keep-going >/dev/null 2>"$T/max.err"
ok "so is stopping at --max-tokens" grep -q "3 tokens: the --max-tokens limit" "$T/max.err"
sigma-tokenize train -q --vocab-size 290 --pattern cl100k -o "$T/other.txt" "$T/text"
fails_with "another tokenizer is refused" 1 "made with another tokenizer" sigma-generate "$T/run" -t "$T/other.txt" -p x
fails_with "not a checkpoint" 1 "not a checkpoint" sigma-generate "$T" -t "$T/tok.txt" -p x
fails_with "no tokenizer" 2 "missing -t" sigma-generate "$T/run" -p x

# ---- the cache, sampling controls, stop strings, --stream --------------------------------
g() { sigma-generate "$T/run" -t "$T/tok.txt" "$@"; }
is "--stream writes what the whole text is" "$(g -p "the quick brown" -n 12 --keep-going --stream -q)" "$out"
is "--stream --ids writes the ids of --ids" "$(g -p "the" -n 9 --stream --ids -q)" "$(g -p "the" -n 9 --ids -q)"
g -p "the quick brown" -n 40 --keep-going --stop " lazy" >"$T/stop.out" 2>"$T/stop.err"
is "--stop ends the text before the stop string" "$(cat "$T/stop.out")" " fox jumps over the"
ok "and says so" grep -q "a stop string ended the text after [0-9]* tokens" "$T/stop.err"
is "the first stop string to appear wins" "$(g -p "the quick brown" -n 40 --stop dog --stop " over" --stop zzz -q)" " fox jumps"
is "a stop string across tokens, held back by --stream" \
    "$(g -p "the quick brown" -n 40 --keep-going --stop "r the la" --stream -q)" " fox jumps ove"
# (greedy, this model's top logit is far above the rest, all negative: no penalty moves it)
plain=$(g -p "the quick brown fox" -n 24 --keep-going --temperature 1 --seed 3 --ids -q)
pen=$(g -p "the quick brown fox" -n 24 --keep-going --temperature 1 --seed 3 --ids -q --repetition-penalty 100)
ok "--repetition-penalty changes what is drawn" test "$pen" != "$plain"
a=$(g -p "the" -n 30 --temperature 1 --top-k 3 --top-p 0.9 --min-p 0.05 --seed 5 --ids -q | tr '\n' ' ')
is "sampling with top-k, top-p and min-p is seeded" \
    "$(g -p "the" -n 30 --temperature 1 --top-k 3 --top-p 0.9 --min-p 0.05 --seed 5 --ids -q | tr '\n' ' ')" "$a"
is "--top-k 1 samples what greedy picks" "$(g -p the -n 10 --temperature 2 --top-k 1 --keep-going -q)" "$(g -p the -n 10 --keep-going -q)"
is "-n 0 writes an empty text" "$(g -p the -n 0 -q)" ""
# an empty prompt is a new document; invalid UTF-8 is encoded bytewise
is "an empty prompt starts a new document" "$(g -p "" -n 9 -q)" "$(printf '' | g -n 9 -q)"
ok "a prompt of invalid UTF-8 is taken" sh -c "printf 'the \\377\\376 quick' | sigma-generate '$T/run' -t '$T/tok.txt' -n 5 -q"
# options out of range: one line, exit 2
for bad in "--temperature -1" "--top-k 2.5" "--top-p 1.5" "--min-p -0.1" "--repetition-penalty 0" "--max-tokens x" "--batch 0"; do
    opt=${bad%% *}
    fails_with "$bad is refused" 2 "^sigma-generate: $opt" g -p x $bad
done
fails_with "--stream and --jsonl exclude each other" 2 "not with --jsonl" g --jsonl --stream
fails_with "--prompt and a FILE exclude each other" 2 "not both" g -p x "$T/text"

# ---- the window --------------------------------------------------------------------------
window=$(jq .model.max_seq_len "$T/run/step-00000060/config.json")
head -n 60 "$T/text" | tr '\n' ' ' >"$T/long"
fails_with "a prompt longer than the window is refused, naming --slide" 1 "more than the model's window of $window .*--slide" g "$T/long"
ok "--slide takes it" g --slide -n 4 "$T/long"
g -p the -n 400 --keep-going --ids >"$T/full.out" 2>"$T/full.err"
is "a text ends when it fills the window (the prompt 2 tokens, the last token not fed back)" \
    "$(($(wc -l <"$T/full.out") + 2))" "$((window + 1))"
ok "and says so" grep -q "window of $window tokens is full" "$T/full.err"
ok "--slide goes on past the window" test "$(g -p the -n 400 --keep-going --ids --slide -q | wc -l)" -eq 400

# ---- JSON Lines ---------------------------------------------------------------------------
cat >"$T/in.jsonl" <<'EOF'
{"id": "a", "prompt": "the quick brown"}
{"prompt": "the", "max_tokens": 3}

{"id": 7, "prompt": "the quick brown fox jumps over the", "stop": ["dog", "zzz"]}
{"prompt": "", "max_tokens": 5, "temperature": 1.5, "seed": 9}
{"prompt": "the lazy", "repetition_penalty": 1.5, "temperature": 1}
EOF
g --jsonl "$T/in.jsonl" >"$T/out.jsonl" 2>"$T/jsonl.err"
is "a line out for each prompt in, in order" "$(jq -r '.id // "-"' "$T/out.jsonl" | tr '\n' ' ')" "a - 7 - - "
is "prompts of different lengths batched give what each gives alone" "$(jq -r .completion "$T/out.jsonl" | head -n 3)" \
    "$(g -p "the quick brown" -q; g -p the -n 3 -q; g -p "the quick brown fox jumps over the" --stop dog --stop zzz -q)"
is "finish_reason: stop at end-of-text or a stop string, length at max_tokens" \
    "$(jq -r .finish_reason "$T/out.jsonl" | head -n 4 | tr '\n' ' ')" "stop length stop length "
is "tokens and prompt_tokens" "$(sed -n 2p "$T/out.jsonl" | jq -c '[.tokens, .prompt_tokens]')" "[3,2]"
is "a line's own seed draws as --seed does" "$(sed -n 4p "$T/out.jsonl" | jq -r .completion)" \
    "$(g -p "" -n 5 --temperature 1.5 --seed 9 -q)"
is "a line's options are its own, and line L draws with --seed + L - 1 (line 6: seed 6)" \
    "$(sed -n 5p "$T/out.jsonl" | jq -r .completion)" "$(g -p "the lazy" --repetition-penalty 1.5 --temperature 1 --seed 6 -q)"
is "--batch 1 and --batch 3 give the same lines" "$(g --jsonl --batch 1 -q <"$T/in.jsonl")" "$(g --jsonl --batch 3 -q <"$T/in.jsonl")"
is "--ids adds the ids" "$(g --jsonl --ids -q <"$T/in.jsonl" | sed -n 2p | jq -c .ids)" "[$(g -p the -n 3 --ids -q | paste -sd, -)]"
printf '{"prompt": "the"}\n[1, 2]\n' >"$T/bad1.jsonl"
fails_with "a JSON line that is not an object, by its line number" 1 "bad1.jsonl, line 2: not a JSON object" g --jsonl "$T/bad1.jsonl"
ok "nothing is generated before the error" test ! -s "$T/.out"
printf '{"prompt": "the"}\n\n{"prompt": "x", "top_p": 2}\n' >"$T/bad2.jsonl"
fails_with "an option out of range in a line, by its line number" 1 "line 3: \"top_p\" must be a number from 0 to 1, got 2" \
    g --jsonl "$T/bad2.jsonl"
printf '{"prompt": "the"}\n{"prompt": 3}\n{"text": "x"}\n{"prompt": "a", "messages": []}\n{"prompt": "a"\n' >"$T/bad3.jsonl"
fails_with "a prompt that is not a string" 1 "line 2: \"prompt\" is not a string" g --jsonl "$T/bad3.jsonl"
g --jsonl --skip-bad "$T/bad3.jsonl" >"$T/skip.out" 2>"$T/skip.err"
is "--skip-bad leaves the bad lines out" "$(jq -r .prompt "$T/skip.out")" "the"
ok "and counts them" grep -q "skipped 4 bad lines" "$T/skip.err"
printf '{"prompt": "the \377"}\n' | g --jsonl -n 4 -q >"$T/utf8.out"
ok "the output is valid UTF-8 JSON even for invalid UTF-8 in" python3 -c "import json, sys; json.loads(open(sys.argv[1], 'rb').read().decode('utf-8'))" "$T/utf8.out"
is "the prompt's invalid byte written as U+FFFD" "$(jq -r .prompt "$T/utf8.out")" "the $(printf '\357\277\275')"

# ---- chat ---------------------------------------------------------------------------------
# A model of a chat tokenizer, whose <|im_end|> row of the head is made a
# little more likely than "." (so it ends a reply where the model would
# write the full stop); trainer.json goes with its checksum.
sigma-tokenize train -q --chat --vocab-size 300 --pattern gpt2 -o "$T/chat.tok" "$T/text" 2>/dev/null
sigma-tokenize encode -q -t "$T/chat.tok" --lines "$T/text" | sigma-shard -q -o "$T/cshards" --val-fraction 0
sigma-pretrain -q --preset test --data "$T/cshards" --out "$T/crun" --seq-len 32 --micro-batch 8 --batch-tokens 256 \
    --steps 60 --lr 1e-2 --warmup 5 --eval-every 0 --balance none
cp -r "$T/crun/step-00000060" "$T/chat"; rm "$T/chat/trainer.json"
end=$(sigma-tokenize info -t "$T/chat.tok" | jq '.special_tokens["<|im_end|>"]')
dot=$(printf . | sigma-tokenize encode -q -t "$T/chat.tok" --ids)
python3 - "$T/chat/model.safetensors" "$end" "$dot" <<'PY'
import json, struct, sys
path, dst, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
raw = bytearray(open(path, 'rb').read())
n = struct.unpack('<Q', raw[:8])[0]
t = json.loads(raw[8:8 + n])['lm_head.weight']; d = t['shape'][1]
at = lambda r: 8 + n + t['data_offsets'][0] + 4 * d * r
row = struct.unpack(f'<{d}f', raw[at(src):at(src) + 4 * d])
raw[at(dst):at(dst) + 4 * d] = struct.pack(f'<{d}f', *[1.05 * x for x in row])
open(path, 'wb').write(raw)
PY
c() { sigma-generate "$T/chat" -t "$T/chat.tok" --chat "$@"; }
c -p "the quick brown" --ids >"$T/reply.ids" 2>"$T/reply.err"
c -p "the quick brown" --ids --keep-going -q >"$T/all.ids"
n=$(wc -l <"$T/reply.ids")
ok "--chat stops at <|im_end|> and says so" grep -q "the model ended the reply (<|im_end|>) after $n tokens" "$T/reply.err"
is "the reply is what comes before <|im_end|>" "$(head -n $((n + 1)) "$T/all.ids" | tr '\n' ' ')" "$(tr '\n' ' ' <"$T/reply.ids")$end "
is "its text holds no <|im_end|>" "$(c -p "the quick brown" -q | grep -c 'im_end')" 0
conv='[{"role": "user", "content": "the quick brown"}]'
is "a JSON conversation on standard input is the same conversation" "$(echo "$conv" | c -q)" "$(c -p "the quick brown" -q)"
is "so is {\"messages\": [...]}" "$(echo "{\"messages\": $conv}" | c -q)" "$(c -p "the quick brown" -q)"
echo "{\"messages\": $conv}" >"$T/conv.json"
sigma-generate "$T/chat" -t "$T/chat.tok" --jsonl -q <"$T/conv.json" >"$T/chat.out"
is "a JSON line's messages are a conversation, with the template and its generation prompt" \
    "$(jq .prompt_tokens "$T/chat.out")" "$(chat_ids "$T/chat.tok" --generation-prompt <"$T/conv.json" | wc -l | tr -d ' ')"
is "and its reply is --chat's" "$(jq -r .completion "$T/chat.out")" "$(c -p "the quick brown" -q)"
echo '[{"role": "robot", "content": "x"}]' >"$T/robot.json"
fails_with "a bad conversation names the message" 1 "message 1: unknown role \"robot\"" c "$T/robot.json"
fails_with "--chat needs a chat tokenizer, and says how to get one" 1 "sigma-tokenize train --chat" g --chat -p x

# a checkpoint from elsewhere (no trainer.json, so no checksum): the
# safetensors reader itself must name what is wrong
cp -r "$T/run/step-00000060" "$T/ck"; rm "$T/ck/trainer.json"
ok "a checkpoint without trainer.json loads" sigma-generate "$T/ck" -t "$T/tok.txt" -p the -n 2
st() {   # python expression over header h; writes $T/bad/model.safetensors
    rm -rf "$T/bad"; cp -r "$T/ck" "$T/bad"
    python3 - "$T/ck/model.safetensors" "$T/bad/model.safetensors" "$1" <<'PY'
import json, struct, sys
src, dst, edit = sys.argv[1:4]
raw = open(src, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = raw[8 + n:]
exec(edit)
hb = json.dumps(h).encode(); hb += b' ' * (-len(hb) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
PY
}
st "h['model.layers.0.mlp.gate.weight2'] = h.pop('model.layers.0.mlp.gate.weight')"
fails_with "a missing tensor is named" 1 "tensor model.layers.0.mlp.gate.weight is missing" sigma-generate "$T/bad" -t "$T/tok.txt" -p x
st "h['model.norm.weight']['shape'] = [2, 16]"
fails_with "a wrong shape is named" 1 "tensor model.norm.weight has shape \\[2, 16\\], expected \\[32\\]" sigma-generate "$T/bad" -t "$T/tok.txt" -p x
st "h['model.norm.weight']['shape'] = [31]"
fails_with "a shape that disagrees with its bytes is named" 1 "tensor model.norm.weight: field 'data_offsets' spans 128 bytes, its shape and dtype F32 need 31 x 4" sigma-generate "$T/bad" -t "$T/tok.txt" -p x
st "h['model.norm.weight']['dtype'] = 'BF16'; h['model.norm.weight']['shape'] = [64]"
fails_with "a wrong dtype is named" 1 "model.norm.weight has dtype BF16" sigma-generate "$T/bad" -t "$T/tok.txt" -p x
st "h['model.norm.weight']['data_offsets'][1] += 4"
fails_with "bad offsets are named" 1 "model.norm.weight: field 'data_offsets'" sigma-generate "$T/bad" -t "$T/tok.txt" -p x
st "data = data[:-100]"
fails_with "a truncated file" 1 "data_offsets|cut short" sigma-generate "$T/bad" -t "$T/tok.txt" -p x
st "h['extra'] = {'dtype': 'F32', 'shape': [1], 'data_offsets': [len(data), len(data) + 4]}; data += bytes(4)"
fails_with "an unexpected tensor is named" 1 "unexpected tensor extra" sigma-generate "$T/bad" -t "$T/tok.txt" -p x
# a checkpoint naming what lies outside it
rm -rf "$T/hn"; mkdir "$T/hn"; cp -r "$T/ck" "$T/hn/step-00000001"; echo "../ck" >"$T/hn/latest"
fails_with "latest naming ../x is refused" 1 "latest: does not name a checkpoint" sigma-generate "$T/hn" -t "$T/tok.txt" -p x
echo "step-00000002" >"$T/hn/latest"; ln -s "$T/ck" "$T/hn/step-00000002"
fails_with "latest naming a link out of the run is refused" 1 "step-00000002 is a symbolic link out of" sigma-generate "$T/hn" -t "$T/tok.txt" -p x
rm -rf "$T/bad"; cp -r "$T/ck" "$T/bad"; mv "$T/bad/model.safetensors" "$T/elsewhere.safetensors"
ln -s "$T/elsewhere.safetensors" "$T/bad/model.safetensors"
fails_with "a checkpoint file that links out of its directory is refused" 1 "model.safetensors is a symbolic link out of" \
    sigma-generate "$T/bad" -t "$T/tok.txt" -p x
jq '.model.n_kv_heads = 3' "$T/ck/config.json" >"$T/bad/config.json"; cp "$T/ck/model.safetensors" "$T/bad/"
fails_with "a config that cannot work names the field" 1 "n_kv_heads.*must divide n_heads" sigma-generate "$T/bad" -t "$T/tok.txt" -p x
jq 'del(.model.d_expert)' "$T/ck/config.json" >"$T/bad/config.json"
fails_with "a missing config field is named" 1 "field 'd_expert' is missing" sigma-generate "$T/bad" -t "$T/tok.txt" -p x
jq '.model.top_k = [1, 9]' "$T/ck/config.json" >"$T/bad/config.json"
fails_with "k above the number of experts" 1 "top_k' of layer 1 is 9" sigma-generate "$T/bad" -t "$T/tok.txt" -p x
done_testing
