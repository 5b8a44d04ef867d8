#!/bin/sh
# sigma-export without the Hugging Face libraries (make test-interop loads
# the directories in transformers): the files and their headers, sigma ->
# HF -> sigma bit for bit, sharding, bf16, and refusals.
. "$(dirname "$0")/lib.sh"

cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 >"$T/text"
sigma-tokenize train -q --vocab-size 600 --pattern o200k -o "$T/tok.txt" "$T/text"
sigma-tokenize encode -q -t "$T/tok.txt" --lines "$T/text" | sigma-shard -q -o "$T/shards" --val-fraction 0
sigma-pretrain -q --preset test --data "$T/shards" --out "$T/run" --seq-len 32 --micro-batch 4 --batch-tokens 128 \
    --steps 3 --eval-every 0 --topk-schedule "0:2,1...; 2:2..."
ok "export, fp32" sigma-export "$T/run" -t "$T/tok.txt" -o "$T/hf" --dtype fp32
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json; do
    ok "writes $f" test -s "$T/hf/$f"
done
ok "config.json: qwen3_moe, norm_topk_prob false, the final top-k" \
    jq -e '.model_type == "qwen3_moe" and .architectures == ["Qwen3MoeForCausalLM"] and .norm_topk_prob == false and .num_experts_per_tok == 2 and .num_experts == 8' "$T/hf/config.json"
ok "tokenizer.json: byte-level BPE, the pattern, merges, specials" \
    jq -e '.model.type == "BPE" and (.model.merges | length) == 600 - 256 - 1 and .added_tokens[0].content == "<|endoftext|>" and .pre_tokenizer.pretokenizers[0].type == "Split"' "$T/hf/tokenizer.json"
ok "tokenizer_config.json: a tokenizer without the chat tokens writes no template" jq -e 'has("chat_template") | not' "$T/hf/tokenizer_config.json"
st_check() {   # the safetensors specification, with python3's standard library
    python3 - "$@" <<'PY'
import json, struct, sys
for f in sys.argv[1:]:
    raw = open(f, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    assert n % 8 == 0 and h.pop('__metadata__') == {'format': 'pt'}, f
    spans = [v['data_offsets'] for v in h.values()]
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] == len(raw) - 8 - n, f
PY
}
ok "the safetensors header: 8-byte length, padded JSON, format pt, contiguous offsets in order" st_check "$T/hf/model.safetensors"
ok "import back" sigma-export --import "$T/hf" -o "$T/back" -t "$T/tok.txt"
ok "sigma -> HF -> sigma is bit for bit" cmp "$T/run/step-00000003/model.safetensors" "$T/back/model.safetensors"
ok "the imported checkpoint generates like the original" \
    sh -c "test \"\$(sigma-generate '$T/back' -t '$T/tok.txt' -p 'the' -n 8 --ids)\" = \"\$(sigma-generate '$T/run' -t '$T/tok.txt' -p 'the' -n 8 --ids)\""
ok "sharded above --max-shard-size, with an index" sigma-export "$T/run" -o "$T/sharded" --dtype fp32 --max-shard-size 50k
n=$(ls "$T/sharded"/model-*-of-*.safetensors | wc -l)
ok "$n shards, each within the specification" st_check $(ls "$T/sharded"/model-*.safetensors)
ok "the index maps every tensor" jq -e '(.weight_map | length) == 69 and .metadata.total_size > 0' "$T/sharded/model.safetensors.index.json"
sigma-export --import "$T/sharded" -o "$T/back2"
ok "a sharded directory imports bit for bit too" cmp "$T/run/step-00000003/model.safetensors" "$T/back2/model.safetensors"
ok "bf16 by default" sigma-export "$T/run" -o "$T/bf16"
ok "bf16 halves the weights" test "$(wc -c <"$T/bf16/model.safetensors")" -lt "$(( $(wc -c <"$T/hf/model.safetensors") * 6 / 10 ))"
sigma-export --import "$T/bf16" -o "$T/back16"
ok "a bf16 import generates (rounded weights)" sigma-generate "$T/back16" -t "$T/tok.txt" -p the -n 4

fails_with "an existing output directory is refused" 1 "already exists" sigma-export "$T/run" -o "$T/hf"
ok "--force replaces it" sigma-export "$T/run" -o "$T/hf" --force --dtype fp32
sigma-tokenize train -q --vocab-size 600 --pattern cl100k -o "$T/other.txt" "$T/text"
fails_with "another tokenizer is refused" 1 "made with another tokenizer" sigma-export "$T/run" -t "$T/other.txt" -o "$T/x"
cp -r "$T/run/step-00000003" "$T/mixed"; rm "$T/mixed/trainer.json"
jq '.model.top_k = [2, 1]' "$T/run/step-00000003/config.json" >"$T/mixed/config.json"
fails_with "layers with different top-k cannot be one Qwen3-MoE" 1 "one num_experts_per_tok" sigma-export "$T/mixed" -o "$T/x"
cp -r "$T/hf" "$T/renorm"; jq '.norm_topk_prob = true' "$T/hf/config.json" >"$T/renorm/config.json"
fails_with "a renormalising Qwen3-MoE is refused on import" 1 "norm_topk_prob is true" sigma-export --import "$T/renorm" -o "$T/x"
cp -r "$T/hf" "$T/noexp"; jq '.num_experts = 9' "$T/hf/config.json" >"$T/noexp/config.json"
fails_with "a misshapen tensor is named on import" 1 "mlp.gate.weight has shape" sigma-export --import "$T/noexp" -o "$T/x"
ok "no partial output after any of these" sh -c "! ls -d '$T'/x* 2>/dev/null"
fails_with "not a checkpoint" 1 "not a checkpoint" sigma-export "$T" -o "$T/x"

# A tokenizer with the chat tokens: the template for apply_chat_template
# (make test-interop checks its ids in transformers). A model fine-tuned on
# chat (sigma-sft's "sft" section in config.json) ends its replies with
# <|im_end|>. The sft checkpoint here is a pretrained one with that section
# added: config.json carries no checksum (trainer.json records the
# safetensors files' and its own), so the edit is a checkpoint as sigma-sft
# would write it, apart from the weights.
sigma-tokenize train -q --chat --vocab-size 600 --pattern o200k -o "$T/chat.tok" "$T/text"
sigma-tokenize encode -q -t "$T/chat.tok" --lines "$T/text" | sigma-shard -q -o "$T/chat-shards" --val-fraction 0
sigma-pretrain -q --preset test --data "$T/chat-shards" --out "$T/chat-run" --seq-len 32 --micro-batch 4 --batch-tokens 128 \
    --steps 2 --eval-every 0
special() { sigma-tokenize info -t "$T/chat.tok" | jq ".special_tokens[\"$1\"]"; }
eot=$(special '<|endoftext|>') start=$(special '<|im_start|>') end=$(special '<|im_end|>')
ok "export with a chat tokenizer" sigma-export "$T/chat-run" -t "$T/chat.tok" -o "$T/hf-chat"
is "tokenizer_config.json: chat_template is chat.c's template" "$(jq -r .chat_template "$T/hf-chat/tokenizer_config.json")" "$(chat_ids --jinja)"
ok "tokenizer.json: <|im_start|> and <|im_end|> are added special tokens, with sigma's ids" \
    jq -e --argjson s "$start" --argjson e "$end" '[.added_tokens[] | select(.special and (.normalized | not)) | [.content, .id]]
        | index([["<|im_start|>", $s]]) != null and index([["<|im_end|>", $e]]) != null' "$T/hf-chat/tokenizer.json"
ok "a pretrained model still ends at <|endoftext|>" jq -e --argjson t "$eot" '.eos_token_id == $t' "$T/hf-chat/generation_config.json" "$T/hf-chat/config.json"
ok "and its tokenizer says so" jq -e '.eos_token == "<|endoftext|>"' "$T/hf-chat/tokenizer_config.json"
sft=$(cat "$T/chat-run/latest")
cp -r "$T/chat-run/$sft" "$T/sft"
jq '.sft = {"template": "chatml", "train_on": "assistant"} | .created_by = "sigma-sft 0.1.0"' "$T/chat-run/$sft/config.json" >"$T/sft/config.json"
ok "export of an sft checkpoint (its weights' checksum still holds)" sigma-export "$T/sft" -t "$T/chat.tok" -o "$T/hf-sft"
ok "generation_config.json: eos_token_id is [<|im_end|>, <|endoftext|>]" \
    jq -e --argjson e "$end" --argjson t "$eot" '.eos_token_id == [$e, $t] and .bos_token_id == $t' "$T/hf-sft/generation_config.json"
ok "config.json: eos_token_id is <|im_end|>" jq -e --argjson e "$end" '.eos_token_id == $e' "$T/hf-sft/config.json"
ok "tokenizer_config.json: eos_token <|im_end|>, pad and bos <|endoftext|>, the template" \
    jq -e '.eos_token == "<|im_end|>" and .pad_token == "<|endoftext|>" and .bos_token == "<|endoftext|>" and (.chat_template | length) > 0' \
    "$T/hf-sft/tokenizer_config.json"
ok "the weights are the checkpoint's" cmp "$T/hf-chat/model.safetensors" "$T/hf-sft/model.safetensors"
jq '.sft.template = "llama3"' "$T/sft/config.json" >"$T/sft/c" && mv "$T/sft/c" "$T/sft/config.json"
fails_with "an sft checkpoint of another template is refused" 1 "config.json: sft: template \"llama3\"; this sigma knows ChatML" \
    sigma-export "$T/sft" -t "$T/chat.tok" -o "$T/x"
jq '.sft = "chatml"' "$T/sft/config.json" >"$T/sft/c" && mv "$T/sft/c" "$T/sft/config.json"
fails_with "an sft section that is not an object is refused" 1 "config.json: sft: not a JSON object" sigma-export "$T/sft" -o "$T/x"
rm -rf "$T/sft"; cp -r "$T/run/step-00000003" "$T/sft"
jq '.sft = {"template": "chatml"}' "$T/run/step-00000003/config.json" >"$T/sft/config.json"
fails_with "an sft checkpoint whose tokenizer has no chat tokens is refused, saying how to make one" 1 \
    "tok.txt has no <\\|im_start\\|> and <\\|im_end\\|> tokens: train one with them \\(sigma-tokenize train --chat\\)" \
    sigma-export "$T/sft" -t "$T/tok.txt" -o "$T/x"
ok "no partial output after them" sh -c "! ls -d '$T'/x* 2>/dev/null"

# --import reads Hugging Face files through sigma's one safetensors reader:
# a hostile header is refused with the file, tensor and field, never a crash
hf_edit() {   # python over header h and data of $T/hf/model.safetensors -> $T/evil/model.safetensors
    rm -rf "$T/evil" "$T/x"; cp -r "$T/hf" "$T/evil"
    python3 - "$T/hf/model.safetensors" "$T/evil/model.safetensors" "$1" <<'PY'
import json, struct, sys
src, dst, edit = sys.argv[1:4]
raw = open(src, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = raw[8 + n:]; hb = None
exec(edit)
if hb is None:
    hb = json.dumps(h).encode(); hb += b' ' * (-len(hb) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
PY
}
W=model.norm.weight
for offs in '[]' '5' '[0]' '"x"' '[0, 1, 2]' '[null, 4]'; do
    hf_edit "h['$W']['data_offsets'] = json.loads('$offs')"
    fails_with "data_offsets $offs is refused, not a crash" 1 "model.safetensors: tensor $W: field 'data_offsets' must" \
        sigma-export --import "$T/evil" -o "$T/x"
done
hf_edit "h['$W']['data_offsets'] = [-8, h['$W']['data_offsets'][1] - 8]"
fails_with "negative data_offsets are refused" 1 "tensor $W: field 'data_offsets' must hold two non-negative" sigma-export --import "$T/evil" -o "$T/x"
hf_edit "del h['$W']['dtype']"
fails_with "a missing field names the file and the tensor" 1 "evil/model.safetensors: tensor $W: field 'dtype' is missing" \
    sigma-export --import "$T/evil" -o "$T/x"
hf_edit "hb = b'{\"a\": nope}   '"
fails_with "a header that is not JSON names the byte" 1 "model.safetensors: the header is not valid JSON at byte 14" sigma-export --import "$T/evil" -o "$T/x"
hf_edit "hb = b'[1, 2, 3]'"
fails_with "a header that is not an object says why" 1 "not a safetensors file: the header \\(byte 8\\) does not begin" sigma-export --import "$T/evil" -o "$T/x"
cp -r "$T/hf" "$T/evil2"; printf '\377\377\377\377\377\377\377\177' | dd of="$T/evil2/model.safetensors" conv=notrunc 2>/dev/null
fails_with "a header length of 2^63 is checked against the file" 1 "the header length \\(bytes 0-7\\) is 9223372036854775807" \
    sigma-export --import "$T/evil2" -o "$T/x"
hf_edit "h['$W']['shape'] = [2, 16]"
fails_with "a shape that disagrees is named" 1 "tensor $W has shape \\[2, 16\\], expected \\[32\\]" sigma-export --import "$T/evil" -o "$T/x"
rm -rf "$T/evil"; cp -r "$T/sharded" "$T/evil"
jq '.weight_map["model.norm.weight"] = ".."' "$T/sharded/model.safetensors.index.json" >"$T/evil/model.safetensors.index.json"
fails_with "weight_map naming .. is refused" 1 "weight_map: tensor model.norm.weight: \"..\" is not a plain file name" \
    sigma-export --import "$T/evil" -o "$T/x"
jq '.weight_map["model.norm.weight"] = "../hf/model.safetensors"' "$T/sharded/model.safetensors.index.json" >"$T/evil/model.safetensors.index.json"
fails_with "weight_map naming ../x is refused" 1 "is not a plain file name" sigma-export --import "$T/evil" -o "$T/x"
cp "$T/sharded/model.safetensors.index.json" "$T/evil/"
last=$(ls "$T/evil"/model-*.safetensors | tail -n 1)
mv "$last" "$T/outside.safetensors"; ln -s "$T/outside.safetensors" "$last"
fails_with "a shard that links out of the directory is refused" 1 "is a symbolic link out of" sigma-export --import "$T/evil" -o "$T/x"
rm "$last"; ln -s "$(basename "$last").real" "$last"; mv "$T/outside.safetensors" "$last.real"
ok "a link that stays inside the directory is followed" sigma-export --import "$T/evil" -o "$T/x"
ok "no partial output after the refusals" sh -c "test \$(ls -d '$T'/x* | wc -l) = 1"
done_testing
