#!/bin/sh
# The sft pipeline's data script (pipelines/sft_data.py) on a WordNet and an
# apropos listing made here: which sense and which part of a gloss become
# the answer, which man pages are kept, and a held-out split that is
# fixed, disjoint from the training questions and covered by the facts.
# (The pipeline itself is not run here: it takes minutes; make sft.)
. "$(dirname "$0")/lib.sh"
W=$T/wordnet
mkdir -p "$W"
# index: lemma pos synset_cnt p_cnt [ptr]... sense_cnt tagsense_cnt offsets (most frequent sense first)
cat >"$W/index.noun" <<'EOF'
  1 a licence line, as WordNet's files begin
dog n 2 1 @ 2 3 00000200 00000100
walk n 1 0 1 1 00000300
cat n 1 0 1 0 00000400
ice_cream n 1 0 1 1 00000500
EOF
cat >"$W/data.noun" <<'EOF'
  1 a licence line
00000100 05 n 01 dog 0 000 | a dull unattractive unpleasant girl or woman; "she got a reputation as a frump"
00000200 05 n 01 dog 0 000 | a domesticated member of the genus Canis; a pet; "the dog barked all night"
00000300 04 n 01 walk 0 000 | the act of traveling by foot; "walking is a healthy form of exercise"
00000400 05 n 01 cat 0 000 | feline mammal usually having thick soft fur
00000500 13 n 01 ice_cream 0 000 | frozen dessert containing cream and sugar
EOF
printf 'walk v 1 0 1 1 00000600\nrun v 1 0 1 2 00000700\n' >"$W/index.verb"
printf '00000600 38 v 01 walk 0 000 | use one'"'"'s feet to advance\n00000700 38 v 01 run 0 000 | move fast by using one'"'"'s feet\n' >"$W/data.verb"
: >"$W/index.adj"; : >"$W/data.adj"; : >"$W/index.adv"; : >"$W/data.adv"
cat >"$T/apropos.txt" <<'EOF'
grep (1)             - print lines that match patterns
egrep (1)            - print lines that match patterns
ls (1)               - list directory contents.
mkfs (8)             - build a Linux filesystem
aclocal-1.16 (1)     - manual page for aclocal 1.16.5
zstdmt (1)           - zstd, zstdmt, unzstd, zstdcat - Compress or decompress .zst files
gcloud_x (1)         - (unknown subject)
EOF
data() { python3 "$SIGMA_ROOT/pipelines/sft_data.py" --wordnet "$W" --apropos "$T/apropos.txt" "$@"; }
ok "runs" data --words 3 --commands 3 --held 1 --phrasings 1 --out "$T/one"
is "every kept fact, its heading then its definition on a line of its own" "$(jq -r .text "$T/one/facts.jsonl" | paste -d'|' - - | sort)" \
    "$(printf '%s\n' 'dog (noun)|a domesticated member of the genus Canis' 'egrep (1)|print lines that match patterns' \
    'ls (1)|list directory contents' 'mkfs (8)|build a Linux filesystem' 'run (verb)|move fast by using one'"'"'s feet' \
    'walk (noun)|the act of traveling by foot' | sort)"
echo "# the most frequent sense, its definition without the examples; nouns before verbs; words in common use only"
echo "# (not cat), of letters only; a description shared by aliases once, under the first name; no help2man stub"
ok "runs with three phrasings" data --words 3 --commands 3 --held 1 --out "$T/a"
is "each fact three times, the definition always a line of its own" \
    "$(jq -r '.text | split("\n") | .[1]' "$T/a/facts.jsonl" | sort | uniq -c | awk '{ print $1 }' | sort -u)" 3
ok "one of them the question, as a FAQ asks it" jq -s -e 'map(.text | select(startswith("What does the word '"'"'dog'"'"' mean?\n")))
    | length == 1' "$T/a/facts.jsonl"
is "the held-out questions: one of each kind, words first" \
    "$(jq -r '.messages[0].content' "$T/a/held-out.jsonl" | sed -E 's/^What does the (word|command) .*/\1/' | tr '\n' ' ')" "word command "
ok "a question and its answer, as the chat template takes them" jq -s -e 'all(.[]; (.messages | length) == 2 and
    .messages[0].role == "user" and .messages[1].role == "assistant" and (.messages[0].content |
    test("^What does the (word .* mean|command `.*` do)\\?$")))' "$T/a/held-out.jsonl" "$T/a/train.jsonl"
is "held out and trained on: every fact once" \
    "$(cat "$T/a/held-out.jsonl" "$T/a/train.jsonl" | jq -r '.messages[1].content' | sort -u | wc -l | tr -d ' ')" 6
ok "each answer is a fact's definition" sh -c "jq -r '.messages[1].content' '$T/a/held-out.jsonl' '$T/a/train.jsonl' |
    while read -r a; do jq -s -e --arg a \"\$a\" 'any(.[]; .text | split(\"\n\")[1] == \$a)' '$T/one/facts.jsonl' >/dev/null || exit 1; done"
ok "stats" jq -e '.facts == 6 and .documents == 18 and .train == 4 and .held_out == 2 and .words_available == 3 and
    .commands_available == 3' "$T/a/stats.json"
data --words 3 --commands 3 --held 1 --out "$T/b" >/dev/null
ok "the same files again" sh -c "cmp '$T/a/held-out.jsonl' '$T/b/held-out.jsonl' && cmp '$T/a/train.jsonl' '$T/b/train.jsonl' && cmp '$T/a/facts.jsonl' '$T/b/facts.jsonl'"
data --words 3 --commands 2 --held 1 --out "$T/c" >/dev/null
ok "fewer facts: the held-out questions of the kind kept whole stay the same" \
    sh -c "[ \"\$(head -n 1 '$T/a/held-out.jsonl')\" = \"\$(head -n 1 '$T/c/held-out.jsonl')\" ]"
fails_with "asking for more facts than there are says what to install" 1 "wordnet-base" data --words 9 --out "$T/d"
done_testing
