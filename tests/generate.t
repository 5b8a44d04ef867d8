#!/bin/sh
# sigma-generate: a model trained on a repeated sentence continues it;
# greedy is deterministic, sampling is seeded; mismatches are refused.
. "$(dirname "$0")/lib.sh"

i=0; : >"$T/text"
while [ $i -lt 400 ]; do echo "the quick brown fox jumps over the lazy dog." >>"$T/text"; i=$((i + 1)); done
sigma-tokenize train -q --vocab-size 300 --pattern gpt2 -o "$T/tok.txt" "$T/text"
sigma-tokenize encode -q -t "$T/tok.txt" --lines "$T/text" | sigma-shard -q -o "$T/shards" --val-fraction 0
sigma-pretrain -q --preset test --data "$T/shards" --out "$T/run" --seq-len 32 --micro-batch 8 --batch-tokens 256 \
    --steps 60 --lr 1e-2 --warmup 5 --eval-every 0 --balance none
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
