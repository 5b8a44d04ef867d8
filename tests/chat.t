#!/bin/sh
# The chat template (lib/text/chat.c): a conversation encodes to exactly the
# ChatML text, the special tokens by id, and the loss mask covers exactly
# each assistant message's content and its closing <|im_end|>.
. "$(dirname "$0")/lib.sh"
cat "$SIGMA_ROOT"/README.md >"$T/text"
sigma-tokenize train -q --chat --vocab-size 600 --pattern o200k -o "$T/chat.tok" "$T/text"
sigma-tokenize train -q --vocab-size 600 --pattern o200k -o "$T/plain.tok" "$T/text"
cat >"$T/conv.json" <<'JSON'
{"messages": [{"role": "system", "content": "You are terse."},
              {"role": "user", "content": "What does sigma-shard do?"},
              {"role": "assistant", "content": "It writes a token stream into a shard set.\n\nChecksummed, é."},
              {"role": "user", "content": " And verify?"},
              {"role": "assistant", "content": "It checks every checksum."}]}
JSON
chat_ids "$T/chat.tok" <"$T/conv.json" >"$T/ids"
# the bytes of the tokens of lines that pass the awk filter $1, as text
bytes() { awk "$1"' { printf "%s", $3 }' | sed 's/../\\x&/g' | xargs -0 printf '%b'; }
text=$(jq -j '.messages[] | "<|im_start|>\(.role)\n\(.content)<|im_end|>\n"' "$T/conv.json")
is "the tokens decode to the ChatML text" "$(bytes 1 <"$T/ids")" "$text"
start=$(sigma-tokenize info -t "$T/chat.tok" | jq '.special_tokens["<|im_start|>"]')
is "<|im_start|> is one special token, by id, once a message" "$(awk -v s="$start" '$1 == s' "$T/ids" | wc -l)" 5
is "the learned tokens are the assistants' contents and their <|im_end|>" \
    "$(bytes '$2 == 1' <"$T/ids")" \
    "$(jq -j '.messages[] | select(.role == "assistant") | "\(.content)<|im_end|>"' "$T/conv.json")"
chat_ids "$T/chat.tok" --generation-prompt <"$T/conv.json" | awk -v s="$start" '$1 == s { n = 0 } { line[n++] = $0 } END { for (i = 0; i < n; i++) print line[i] }' >"$T/gp"
is "the generation prompt ends it: <|im_start|>assistant and a newline, learning nothing" \
    "$(awk '{ printf "%s", $3 }' "$T/gp")/$(awk '$2 == 1' "$T/gp" | wc -l)" \
    "$(printf '<|im_start|>assistant\n' | od -An -tx1 | tr -d ' \n')/0"
is "--train-all: every token learns" "$(chat_ids "$T/chat.tok" --train-all <"$T/conv.json" | awk '$2 == 0' | wc -l)" 0
fails_with "a tokenizer without the chat tokens says how to make one" 1 "sigma-tokenize train --chat" chat_ids "$T/plain.tok" <"$T/conv.json"
done_testing
