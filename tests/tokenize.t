#!/bin/sh
# sigma-tokenize: ids identical to tiktoken on real text (fixtures made by
# tests/make_tokenize_fixtures.py), round trips, threads, linear time on
# pathological input, the tokenizer file, training, bad input.
. "$(dirname "$0")/lib.sh"

FIX=$SIGMA_ROOT/tests/fixtures/tokenize
TOKS=$SIGMA_DATA/tokenizers
tok() { echo "$TOKS/${1}_base.tiktoken"; }
sha() { sha256sum | cut -d' ' -f1; }

ok "--help" sigma-tokenize --help
fails_with "no command is a usage error" 2 "no command" sigma-tokenize
fails_with "unknown pattern" 2 "unknown pattern 'p99k'" sigma-tokenize info -t x --pattern p99k

# ---- identical to tiktoken --------------------------------------------------
if [ -f "$TOKS/o200k_base.tiktoken" ]; then
    # case encoding source_sha256 ntokens ids_sha256
    grep -v '^#' "$FIX/expected.txt" | while read -r case enc src_sha ntok ids_sha; do
        copies=1
        case $case in
            data:*) src=$SIGMA_DATA/${case#data:} ;;
            data4:*) src=$SIGMA_DATA/${case#data4:}; copies=4 ;;
            sys:*) src=${case#sys:} ;;
            *) src=$FIX/$case ;;
        esac
        name="$enc: $case ($ntok tokens) as tiktoken"
        if [ ! -f "$src" ]; then skip "$name" "$src not on this machine"; continue; fi
        case $src in *.gz) cat_src="gzip -dc" ;; *) cat_src=cat ;; esac
        rm -f "$T/src"
        for _ in $(seq $copies); do $cat_src "$src" >>"$T/src"; done
        if [ "$(sha <"$T/src")" != "$src_sha" ]; then skip "$name" "$src differs from the one the fixture was made from"; continue; fi
        got=$(sigma-tokenize -q encode --ids -t "$(tok "$enc")" --pattern "$enc" "$T/src" | sha)
        is "$name" "$got" "$ids_sha"
    done >"$T/fixtures.tap"
    # renumber the points the subshell printed
    while read -r line; do
        case $line in
            "ok "*) _pass "$(echo "$line" | sed 's/^ok [0-9]* - //')" ;;
            "not ok "*) _fail "$(echo "$line" | sed 's/^not ok [0-9]* - //')" ;;
            *) echo "$line" ;;
        esac
    done <"$T/fixtures.tap"

    O200K="-t $(tok o200k) --pattern o200k"
    # ---- round trips, lines, threads ----------------------------------------
    for f in scripts.txt emoji.txt runs.txt invalid.bin; do
        sigma-tokenize -q encode $O200K "$FIX/$f" >"$T/rt.tok"
        sigma-tokenize -q decode $O200K "$T/rt.tok" >"$T/rt.out"
        ok "decode(encode($f)) is the same bytes" cmp "$FIX/$f" "$T/rt.out"
    done
    sigma-tokenize -q encode --lines --ids $O200K "$FIX/invalid.bin" >"$T/ids"
    sigma-tokenize -q decode --ids --lines $O200K "$T/ids" >"$T/back"
    { cat "$FIX/invalid.bin"; echo; } >"$T/invalid.nl"   # decode --lines ends every line
    ok "--lines --ids round trip, invalid UTF-8 included" cmp "$T/invalid.nl" "$T/back"
    is "--ids: a line per document" "$(wc -l <"$T/ids")" "$(wc -l <"$T/invalid.nl")"
    sigma-tokenize -q encode --lines --threads 1 $O200K "$FIX/scripts.txt" "$FIX/emoji.txt" "$FIX/runs.txt" >"$T/t1"
    sigma-tokenize -q encode --lines --threads 4 $O200K "$FIX/scripts.txt" "$FIX/emoji.txt" "$FIX/runs.txt" >"$T/t4"
    ok "--threads 4 writes the same stream as --threads 1" cmp "$T/t1" "$T/t4"
    # the stream carries the tokenizer's fingerprint and n_vocab
    fp=$(sigma-tokenize info $O200K | sed -n 's/.*"fingerprint":[^"]*"\([0-9a-f]*\)".*/\1/p')
    is "stream header: fingerprint" "$(od -An -tx1 -j16 -N16 "$T/t1" | tr -d ' \n')" "$fp"
    is "stream header: vocab size 200019" "$(od -An -tu4 -j12 -N4 "$T/t1" | tr -d ' ')" "200019"
    printf 'a"b\n' >"$T/tiny"
    sigma-tokenize -q encode --ids -t "$(tok r50k)" --pattern r50k "$T/tiny" >"$T/tiny.ids"
    is "r50k ids of a quote between letters and a newline" "$(cat "$T/tiny.ids")" "64 1 65 198"
    sigma-tokenize -q encode -t "$(tok r50k)" --pattern r50k "$T/tiny" >"$T/tiny.tok"
    fails_with "decode refuses a stream of another tokenizer" 1 "another tokenizer" sigma-tokenize decode $O200K "$T/tiny.tok"

    # ---- the tokenizer file ---------------------------------------------------
    { echo "#sigma-tokenizer 1"; echo "#pattern o200k"; echo "#special 199999 <|endoftext|>"
      echo "#special 200018 <|endofprompt|>"; cat "$(tok o200k)"; } >"$T/o200k.tok"
    fp2=$(sigma-tokenize info -t "$T/o200k.tok" | sed -n 's/.*"fingerprint":[^"]*"\([0-9a-f]*\)".*/\1/p')
    is "same fingerprint from the rank file and from a sigma tokenizer file" "$fp2" "$fp"
    fails_with "a plain rank file needs --pattern" 1 "give its pattern" sigma-tokenize info -t "$(tok o200k)"
    fails_with "pattern that contradicts the file" 1 "pattern is o200k" sigma-tokenize info -t "$T/o200k.tok" --pattern gpt2

    # ---- linear time on pathological input (a quadratic merge would take hours) --
    head -c 10000000 /dev/zero | tr '\0' 'a' >"$T/aaaa"
    ok "10 MB of one repeated character" timeout 120 sigma-tokenize -q encode $O200K -o "$T/aaaa.tok" "$T/aaaa"
    sigma-tokenize -q decode $O200K "$T/aaaa.tok" >"$T/aaaa.back"
    ok "  ... decodes back" cmp "$T/aaaa" "$T/aaaa.back"
    if [ -f "$SIGMA_DATA/corpora/tinyshakespeare.txt" ]; then
        tr -d ' \n\t' <"$SIGMA_DATA/corpora/tinyshakespeare.txt" >"$T/nospace1"
        for i in 1 2 3 4 5 6 7 8 9 10 11; do cat "$T/nospace1"; done | head -c 10000000 >"$T/nospace"
        ok "10 MB without a space" timeout 120 sigma-tokenize -q encode -t "$(tok cl100k)" --pattern cl100k -o "$T/nospace.tok" "$T/nospace"
    else
        skip "10 MB without a space" "no tinyshakespeare.txt under \$SIGMA_DATA"
    fi
    rm -f "$T"/aaaa* "$T"/nospace*
else
    skip "tiktoken comparisons" "no tokenizers under \$SIGMA_DATA ($SIGMA_DATA)"
fi

# ---- training ------------------------------------------------------------------
printf 'ab cd' >"$T/tie.txt"
ok "train on 'ab cd'" sigma-tokenize -q train --pattern gpt2 --vocab-size 260 -o "$T/tie.tok" "$T/tie.txt"
# ties go to the smaller first id: ' ' (32) + c, then a (97) + b, then 256 + d
is "tie rule: ' c', 'ab', ' cd' in that order" "$(grep -v '^#' "$T/tie.tok" | tail -n 3 | tr '\n' ,)" "IGM= 256,YWI= 257,IGNk 258,"
is "end-of-text after the ranks" "$(grep '^#special' "$T/tie.tok")" "#special 259 <|endoftext|>"
printf 'abab' | sigma-tokenize -q train --pattern gpt2 --vocab-size 259 -o "$T/abab.tok"
is "most frequent pair first: ab, then abab" "$(grep -v '^#' "$T/abab.tok" | tail -n 2 | tr '\n' ,)" "YWI= 256,YWJhYg== 257,"

corpus=$FIX/scripts.txt
[ -f "$SIGMA_DATA/corpora/tinyshakespeare.txt" ] && corpus="$SIGMA_DATA/corpora/tinyshakespeare.txt $FIX/scripts.txt $FIX/emoji.txt"
ok "train 2000 tokens, 1 thread" sigma-tokenize -q train --threads 1 --vocab-size 2000 --chat --special '<|pad|>' --pattern gpt2 -o "$T/a.tok" $corpus
ok "train again, 2 threads" sigma-tokenize -q train --threads 2 --vocab-size 2000 --chat --special '<|pad|>' --pattern gpt2 -o "$T/b.tok" $corpus
ok "deterministic: the same file" cmp "$T/a.tok" "$T/b.tok"
sigma-tokenize info -t "$T/a.tok" >"$T/info.json"
is "info: vocab_size" "$(grep -c '"vocab_size":	2000' "$T/info.json")" 1
is "info: chat and extra specials after end-of-text" "$(grep -c -e '"<|endoftext|>":	1996' -e '"<|im_start|>":	1997' -e '"<|im_end|>":	1998' -e '"<|pad|>":	1999' "$T/info.json")" 4
sigma-tokenize -q encode -t "$T/a.tok" "$FIX/invalid.bin" | sigma-tokenize -q decode -t "$T/a.tok" >"$T/inv.back"
ok "trained tokenizer: decode(encode(x)) == x on invalid UTF-8" cmp "$FIX/invalid.bin" "$T/inv.back"
# the summary's bytes a token are the text's, whatever wraps it
jq -Rsc '{text: .}' "$FIX/scripts.txt" >"$T/scripts.jsonl"
sigma-tokenize encode -t "$T/a.tok" "$FIX/scripts.txt" 2>"$T/plain.err" >/dev/null
sigma-tokenize encode -t "$T/a.tok" --jsonl "$T/scripts.jsonl" 2>"$T/jsonl.err" >/dev/null
per() { sed -n 's/.*(\([0-9.]*\) bytes of text a token).*/\1/p' "$1"; }
ok "the encode summary states bytes of text a token ($(per "$T/plain.err"))" test -n "$(per "$T/plain.err")"
is "the same from JSON Lines: the JSON around the text does not count" "$(per "$T/jsonl.err")" "$(per "$T/plain.err")"
grep -v '^#' "$T/a.tok" | head -n 1996 >"$T/plain.tiktoken"
sigma-tokenize -q encode -t "$T/plain.tiktoken" --pattern gpt2 "$FIX/emoji.txt" >"$T/p1"
grep -v -e im_ -e pad "$T/a.tok" >"$T/eot-only.tok"
sigma-tokenize -q encode -t "$T/eot-only.tok" "$FIX/emoji.txt" >"$T/p2"
ok "a trained file minus its '#' lines is a tiktoken rank file (same stream)" cmp "$T/p1" "$T/p2"
printf '{"text": "hello world"}\n{"text": "second doc"}\n' >"$T/docs.jsonl"
ok "train from JSON Lines" sigma-tokenize -q train --jsonl --vocab-size 300 -o "$T/j.tok" "$T/docs.jsonl"
fails_with "vocabulary smaller than 256 + specials" 2 "smaller than 256" sigma-tokenize train --vocab-size 257 --chat -o "$T/x.tok" "$T/tie.txt"
ok "  ... and no file left behind" test ! -e "$T/x.tok"

# ---- documents, JSON Lines, bad input ---------------------------------------------
TOK=$T/a.tok
printf '{"text": "one"}\n{"id": 2, "text": "two\\u00e9"}\n\n{"text": "three"}\n' >"$T/good.jsonl"
sigma-tokenize -q encode --jsonl --ids -t "$TOK" "$T/good.jsonl" >"$T/good.ids"
is "--jsonl: a document per record, blank lines ignored" "$(wc -l <"$T/good.ids")" 3
printf 'two\303\251' >"$T/two.txt"
is "--jsonl: the string's bytes are encoded" "$(sed -n 2p "$T/good.ids")" "$(sigma-tokenize -q encode --ids -t "$TOK" "$T/two.txt")"
printf '{"text": "one"}\n{"body": "x"}\n{"text": oops}\n{"text": 5}\n{"text": "a\\u0000b"}\n{"text": "fine"}\n' >"$T/bad.jsonl"
fails_with "missing field names its line" 1 "bad.jsonl, line 2: no field 'text'" sigma-tokenize -q encode --jsonl --ids -t "$TOK" "$T/bad.jsonl"
sed 2d "$T/bad.jsonl" >"$T/bad2.jsonl"
fails_with "invalid JSON names its line" 1 "bad2.jsonl, line 2: invalid JSON" sigma-tokenize -q encode --jsonl --ids -t "$TOK" "$T/bad2.jsonl"
sigma-tokenize encode --jsonl --skip-bad --ids -t "$TOK" "$T/bad.jsonl" >"$T/skip.ids" 2>"$T/skip.err"
is "--skip-bad: the good records" "$(wc -l <"$T/skip.ids")" 2
ok "--skip-bad: counts what it skipped" grep -q "skipped 4 bad JSON lines" "$T/skip.err"
: >"$T/empty"
sigma-tokenize -q encode -t "$TOK" "$T/empty" >"$T/empty.tok"
is "empty input: a valid empty stream (header + trailer)" "$(wc -c <"$T/empty.tok")" 68
ok "  ... which decodes to nothing" sh -c "sigma-tokenize -q decode -t '$TOK' '$T/empty.tok' | cmp - /dev/null"
sigma-tokenize -q encode --lines --ids -t "$TOK" "$T/empty" >"$T/empty.ids"
is "empty input with --ids: no lines" "$(wc -c <"$T/empty.ids")" 0
fails_with "missing tokenizer file" 1 "nope.tok" sigma-tokenize encode -t "$T/nope.tok" "$T/tie.txt"
sed '7s/.*/YW!= 4/' "$TOK" >"$T/corrupt.tok"
fails_with "corrupt tokenizer file names the line" 1 "corrupt.tok, line 7: invalid base64" sigma-tokenize info -t "$T/corrupt.tok"
n5=$(grep -n ' 5$' "$TOK" | cut -d: -f1)
sed "${n5}s/ 5\$/ 6/" "$TOK" >"$T/rank.tok"
fails_with "out-of-order rank names the line" 1 "rank.tok, line $n5: rank 6 where 5" sigma-tokenize info -t "$T/rank.tok"
sed '2s/.*/#pattern p99k/' "$TOK" >"$T/pat.tok"
fails_with "unknown pattern in the file" 1 "pat.tok, line 2: unknown pattern 'p99k'" sigma-tokenize info -t "$T/pat.tok"
head -n 100 "$TOK" >"$T/short.tok"
fails_with "a file without all 256 bytes" 1 "256 single bytes are needed" sigma-tokenize info -t "$T/short.tok"
printf '1 2 99999\n' >"$T/badids"
fails_with "decode: an id outside the vocabulary names the line" 1 "line 1: token id 99999" sigma-tokenize decode --ids -t "$TOK" "$T/badids"
head -c 40 "$T/p2" >"$T/trunc.tok"
fails_with "decode: a truncated stream" 1 "trunc" sigma-tokenize decode -t "$TOK" "$T/trunc.tok"
sed 's/^#special [0-9]* /#special 4294967807 /' "$TOK" >"$T/wrap.tok"
fails_with "a special id beyond 32 bits is refused, not wrapped" 1 "wrap.tok, line 3: special token id 4294967807 is out of range" \
    sigma-tokenize info -t "$T/wrap.tok"
sed 's/^#special [0-9]* /#special -1 /' "$TOK" >"$T/neg.tok"
fails_with "a negative special id is refused" 1 "neg.tok, line 3: expected '#special ID NAME'" sigma-tokenize info -t "$T/neg.tok"

# outputs: only a regular file (or a new path) is replaced by rename; a
# device, a FIFO or /dev/stdout is written in place; a link is followed
mkfifo "$T/fifo"
timeout 20 cat "$T/fifo" >"$T/fifo.got" & reader=$!   # a FIFO replaced by a file would leave it waiting
ok "-o FIFO: written through the FIFO" sigma-tokenize -q encode -t "$TOK" -o "$T/fifo" "$T/tie.txt"
wait $reader
ok "  ... which is still a FIFO" test -p "$T/fifo"
sigma-tokenize -q encode -t "$TOK" "$T/tie.txt" >"$T/tie.stream"
ok "  ... and passed the stream" cmp "$T/fifo.got" "$T/tie.stream"
if [ "$(id -u)" = 0 ] && mknod "$T/null" c 1 3 2>/dev/null; then
    ok "-o a character device (a /dev/null of our own)" sigma-tokenize -q encode -t "$TOK" -o "$T/null" "$T/tie.txt"
    ok "  ... stays a character device" test -c "$T/null"
else
    skip "-o a character device" "mknod needs root"; skip "  ... stays a character device" "mknod needs root"
fi
: >"$T/target.tok"; ln -s target.tok "$T/link.tok"
ok "-o a symbolic link" sigma-tokenize -q encode -t "$TOK" -o "$T/link.tok" "$T/tie.txt"
ok "  ... stays a link" test -L "$T/link.tok"
ok "  ... and its target got the stream" cmp "$T/target.tok" "$T/tie.stream"
ok "-o /dev/stdout into a file" sh -c "sigma-tokenize -q encode -t '$TOK' -o /dev/stdout '$T/tie.txt' >'$T/viastdout'"
ok "  ... holds the stream" cmp "$T/viastdout" "$T/tie.stream"

done_testing
