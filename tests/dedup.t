#!/bin/sh
# sigma-dedup: formats, order, exact and near duplicates, reports, bad input,
# and the measured quality test on real documents (recall, precision).
. "$(dirname "$0")/lib.sh"

ok "--help" sigma-dedup --help
ok "--version" sigma-dedup --version
is "--version prints the name" "$(sigma-dedup --version | cut -d' ' -f1)" "sigma-dedup"
fails_with "unknown --mode is a usage error" 2 "mode" sigma-dedup --mode fuzzy

# ---- lines, order, exact with both normalizations --------------------------
printf 'The Cat sat on the mat, said report 1\nthe cat sat on the mat said report 22\nA completely different line of text here\nThe Cat sat on the mat, said report 1\n\n\n' > "$T/a.txt"
sigma-dedup -q --lines "$T/a.txt" > "$T/a.out"
printf 'The Cat sat on the mat, said report 1\nA completely different line of text here\n\n' > "$T/a.want"
ok "lines: normalized duplicates and the second empty line removed, order kept" cmp "$T/a.out" "$T/a.want"
sigma-dedup -q --lines --mode exact --normalize none "$T/a.txt" > "$T/a2.out"
printf 'The Cat sat on the mat, said report 1\nthe cat sat on the mat said report 22\nA completely different line of text here\n\n' > "$T/a2.want"
ok "exact, no normalization: only byte-identical lines removed" cmp "$T/a2.out" "$T/a2.want"
cat "$T/a.txt" | sigma-dedup -q --lines > "$T/a3.out"
ok "a pipe gives the same as a file" cmp "$T/a3.out" "$T/a.out"
printf 'one two three four five six seven\nlast line without newline' > "$T/b1.txt"
printf 'ONE two three four five six seven\nanother line\n' > "$T/b2.txt"
sigma-dedup -q --lines "$T/b1.txt" "$T/b2.txt" > "$T/b.out"
is "inputs in turn; a missing final newline is supplied between inputs" "$(cat "$T/b.out")" "one two three four five six seven
last line without newline
another line"

# ---- JSON Lines: other fields verbatim, reports -------------------------------
cat > "$T/c.jsonl" <<'EOF2'
{"id": 1,   "text": "Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega", "meta": {"x": [1, 2.50]}}
{"text":"alpha BETA gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega!","id":2}
{"id":3,"text":"Something entirely unrelated to the others, with \u00e9 accents"}
{"id":4,"text":"Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega and more"}
EOF2
sigma-dedup -q --removed "$T/c.removed" --stats "$T/c.stats" "$T/c.jsonl" > "$T/c.out"
is "kept records are the original lines, byte for byte" "$(cat "$T/c.out")" "$(sed -n '1p;3p' "$T/c.jsonl")"
is "--removed: index, duplicate_of, reason" "$(jq -c '[.index, .duplicate_of, .reason, .record.id]' "$T/c.removed" | tr '\n' ' ')" "[1,0,\"exact\",2] [3,0,\"near\",4] "
is "--stats counts" "$(jq -c '[.documents_in, .documents_out, .exact_removed, .near_removed, .bytes_in]' "$T/c.stats")" "[4,2,1,1,$(wc -c < "$T/c.jsonl" | tr -d ' ')]"
sigma-dedup -q --mode exact "$T/c.jsonl" > "$T/c2.out"
is "--mode exact keeps the near duplicate" "$(wc -l < "$T/c2.out" | tr -d ' ')" "3"
fails_with "a field that is not a string: error with its line" 1 "c.jsonl, line 1: the text field is not a string" sigma-dedup --field id "$T/c.jsonl"

# ---- NUL records and files -----------------------------------------------------
printf 'multi\nline one two three\0multi\nline one two three\0other record\0' > "$T/d.bin"
sigma-dedup -q --nul "$T/d.bin" > "$T/d.out"
is "NUL-separated records with newlines inside" "$(tr '\0' '|' < "$T/d.out")" "multi
line one two three|other record|"
printf 'same words in this file, and more words\n' > "$T/f1"; printf 'Same words in this file and more words' > "$T/f2"; printf 'a different file\n' > "$T/f3"
is "--files writes the kept paths" "$(sigma-dedup -q --files "$T/f1" "$T/f2" "$T/f3" | tr '\n' ' ')" "$T/f1 $T/f3 "

# ---- bad input ---------------------------------------------------------------------
printf '{"text":"fine document number one here"}\n{"text": broken\n{"text":"fine document number two here"}\n' > "$T/e.jsonl"
fails_with "invalid JSON: error with the line number" 1 "e.jsonl, line 2: invalid JSON" sigma-dedup "$T/e.jsonl"
sigma-dedup --skip-bad --removed "$T/e.removed" --stats "$T/e.stats" "$T/e.jsonl" > "$T/e.out" 2> "$T/e.err"
is "--skip-bad: the others kept" "$(wc -l < "$T/e.out" | tr -d ' ')" "2"
ok "--skip-bad: a warning with the count and line" grep -q "skipped 1 bad record, the first at .*line 2" "$T/e.err"
is "--skip-bad: counted in --stats and listed in --removed" "$(jq .bad_skipped "$T/e.stats") $(jq -r .reason "$T/e.removed")" "1 bad"
printf '{"id":1}\n' > "$T/m.jsonl"
fails_with "missing field: error with the line number" 1 "line 1: the text field is missing" sigma-dedup "$T/m.jsonl"
printf '{"text":"has a \\u0000 inside"}\n' > "$T/z.jsonl"
fails_with "a \\u0000 escape is refused by line, not truncated" 1 "line 1: a .u0000 escape" sigma-dedup "$T/z.jsonl"
printf 'caf\351 au lait \377\376 bytes\ncaf\351 au lait \377\376 bytes\nCAF\351 AU LAIT \377\376 BYTES\n' > "$T/u.txt"
sigma-dedup -q --lines "$T/u.txt" > "$T/u.out"
is "invalid UTF-8: handled as bytes, kept byte for byte" "$(od -An -c "$T/u.out" | tr -s ' ' | tr -d '\n')" "$(head -n 1 "$T/u.txt" | od -An -c | tr -s ' ' | tr -d '\n')"
printf '' | sigma-dedup -q --lines > "$T/empty.out"
is "empty input, empty output" "$(wc -c < "$T/empty.out" | tr -d ' ')" "0"
python3 -c "
import sys
w = 'x' * 999 + ' '
sys.stdout.write('{\"id\": 7, \"text\": \"' + w * 100000 + '\"}\n{\"text\": \"short\"}\n')" > "$T/big.jsonl"
ok "a single 100 MB line" sigma-dedup -q --stats "$T/big.stats" "$T/big.jsonl"
cmp -s "$T/.out" "$T/big.jsonl"; is "the 100 MB line written back whole" "$?" "0"

# ---- the measured quality test --------------------------------------------------------
q="$SIGMA_ROOT/tests/dedup_quality.py"
if ! ls /usr/share/doc/*/copyright >/dev/null 2>&1; then
    skip "quality test" "no /usr/share/doc/*/copyright files (not a Debian system)"
else
    [ -f "$SIGMA_DATA/corpora/tinyshakespeare.txt" ] || echo "# tinyshakespeare not in \$SIGMA_DATA: quality test without it"
    [ -d /usr/share/games/fortunes ] || echo "# fortunes not installed (apt-get install fortunes): quality test without them"
    python3 "$q" build "$T/q.jsonl" "$SIGMA_DATA/corpora/tinyshakespeare.txt" | sed 's/^/# corpus: /'
    dedup_truth "$T/q.jsonl" 0.7 > "$T/q.truth"
    n=$(wc -l < "$T/q.jsonl" | tr -d ' ')

    sigma-dedup -q -j 1 --removed "$T/q.rm" "$T/q.jsonl" > "$T/q.out1"
    python3 "$q" score "$T/q.truth" "$T/q.rm" "$n" > "$T/q.score"
    sed 's/^/# MinHash LSH only: /' "$T/q.score"
    recall=$(awk '$1 == "recall" {print $2}' "$T/q.score")
    prec=$(awk '$1 == "precision" {print $2}' "$T/q.score")
    ok "LSH only: recall >= 0.95 on pairs with Jaccard >= 0.8 (got $recall)" awk "BEGIN { exit !($recall >= 0.95) }"
    # Without verification LSH also joins some pairs at 0.5-0.7 (probability
    # 1-(1-J^8)^14: 0.05 at 0.5, 0.21 at 0.6), and the edited copies put many
    # pairs there; --verify removes them (next test).
    ok "LSH only: precision >= 0.85 (got $prec)" awk "BEGIN { exit !($prec >= 0.85) }"

    sigma-dedup -q -j 2 --removed "$T/q.rm2" "$T/q.jsonl" > "$T/q.out2"
    ok "one thread and two threads: the same output" cmp "$T/q.out1" "$T/q.out2"

    sigma-dedup -q --verify 0.7 --removed "$T/q.rmv" "$T/q.jsonl" > /dev/null
    python3 "$q" score "$T/q.truth" "$T/q.rmv" "$n" > "$T/q.score"
    sed 's/^/# --verify 0.7: /' "$T/q.score"
    recall=$(awk '$1 == "recall" {print $2}' "$T/q.score")
    prec=$(awk '$1 == "precision" {print $2}' "$T/q.score")
    ok "--verify 0.7: recall >= 0.95 on pairs with Jaccard >= 0.8 (got $recall)" awk "BEGIN { exit !($recall >= 0.95) }"
    ok "--verify 0.7: precision >= 0.99 (got $prec)" awk "BEGIN { exit !($prec >= 0.99) }"

    sigma-dedup -q --mode exact --removed "$T/q.rme" "$T/q.jsonl" > /dev/null
    is "exact mode removes exactly the documents equal after normalization" \
        "$(jq -r '"\(.index) \(.duplicate_of)"' "$T/q.rme" | sort)" "$(awk '$1 == "E" {print $2, $3}' "$T/q.truth" | sort)"
    sigma-dedup -q --mode exact --normalize none --removed "$T/q.rmn" "$T/q.jsonl" > /dev/null
    is "exact mode without normalization removes exactly the byte-identical ones" \
        "$(jq -r .index "$T/q.rmn" | sort -n | tr '\n' ' ')" "$(awk 'seen[$0]++ {print NR - 1}' "$T/q.jsonl" | tr '\n' ' ')"
fi
done_testing
