#!/bin/sh
# sigma-shard: round trips, the split, verify against corruption, bad input,
# atomic output.
. "$(dirname "$0")/lib.sh"

# ---- round trips ---------------------------------------------------------------
# Byte-identical: cat writes the canonical stream, which tokgen also writes.
roundtrip() {   # name stream [sigma-shard options]
    name=$1 s=$2; shift 2
    rm -rf "$T/rt"
    if sigma-shard -q -o "$T/rt" "$@" "$s" 2>"$T/err" && sigma-shard cat "$T/rt" >"$T/back" 2>>"$T/err" && cmp -s "$s" "$T/back"
    then _pass "$name"; else _fail "$name"; sed 's/^/# /' "$T/err"; fi
}
tokgen random --tokens 200000 --vocab 1000 --seed 1 --mean-doc 300 >"$T/r16.tok"
tokgen random --tokens 200000 --vocab 200064 --seed 2 --mean-doc 300 >"$T/r32.tok"
tokgen random --tokens 30000 --vocab 65536 --seed 3 --mean-doc 50 --empty-every 4 >"$T/edge.tok"
roundtrip "16-bit, zstd, documents across shards" "$T/r16.tok" --shard-tokens 7777
roundtrip "32-bit, zstd" "$T/r32.tok" --shard-tokens 50000
roundtrip "16-bit, raw" "$T/r16.tok" --no-compress --shard-tokens 10000
roundtrip "32-bit, raw, no validation split" "$T/r32.tok" --level 0 --val-fraction 0
roundtrip "vocabulary 65536 stays 16-bit; empty documents" "$T/edge.tok" --shard-tokens 1000
is "width of vocabulary 65536" "$(jq .token_width "$T/rt/manifest.json")" 2
roundtrip "shards of one token; more empty documents than tokens per shard" "$T/edge.tok" --shard-tokens 3 --val-fraction 0.3
roundtrip "everything in validation" "$T/r16.tok" --val-fraction 1 --shard-tokens 60000
if [ -f "$SIGMA_DATA/corpora/tinyshakespeare.txt" ]; then
    tokgen bytes "$SIGMA_DATA/corpora/tinyshakespeare.txt" >"$T/ts.tok"
    roundtrip "real text (tinyshakespeare bytes), default options" "$T/ts.tok"
    roundtrip "real text as 32-bit tokens" "$T/ts.tok" --shard-tokens 100000
else
    skip "real text round trip" "no $SIGMA_DATA/corpora/tinyshakespeare.txt"
    skip "real text round trip, 32-bit" "no shared data"
fi

# ---- the manifest, info and the split ---------------------------------------------
sigma-shard -q -o "$T/a" --shard-tokens 10000 --val-fraction 0.1 --seed 7 "$T/r16.tok"
ok "info prints JSON" sh -c "sigma-shard info '$T/a' | jq -e '.tokens == 200000 and .token_width == 2 and .compression == \"zstd\"'"
docs=$(jq .documents "$T/a/manifest.json")
tr=$(jq .splits.train.documents "$T/a/manifest.json"); va=$(jq .splits.val.documents "$T/a/manifest.json")
is "train + val = all documents" $((tr + va)) "$docs"
ok "about a tenth in validation" test "$va" -gt $((docs / 20)) -a "$va" -lt $((docs / 5))
sigma-shard cat --split val "$T/a" >"$T/val.tok"; sigma-shard cat "$T/a" --split train >"$T/train.tok"
rm -rf "$T/v"; sigma-shard -q -o "$T/v" --val-fraction 0 "$T/val.tok"
is "cat --split val holds the validation documents" "$(jq .documents "$T/v/manifest.json")" "$va"
sigma-shard -q -o "$T/b" --shard-tokens 10000 --val-fraction 0.1 --seed 7 "$T/r16.tok"
ok "same seed, same shard set" diff -r "$T/a" "$T/b"
sigma-shard -q -o "$T/c" --shard-tokens 10000 --val-fraction 0.1 --seed 8 "$T/r16.tok"
fails "another seed, another split" cmp -s "$T/a/val-000000.shard" "$T/c/val-000000.shard"
sigma-shard -q -o "$T/d" --val-fraction 0.5 --val-docs 5 "$T/r16.tok"
is "--val-docs caps the validation split" "$(jq .splits.val.documents "$T/d/manifest.json")" 5
sigma-shard -q -o "$T/two" "$T/r16.tok" - <"$T/r16.tok"
is "two inputs, one after the other" "$(jq .tokens "$T/two/manifest.json")" 400000
fails_with "inputs with different vocabularies are refused" 1 "differs from the first input" sigma-shard -q -o "$T/mix" "$T/r16.tok" "$T/r32.tok"
ok "and leave nothing behind" test ! -e "$T/mix"
printf 'one document only' >"$T/one.txt"
tokgen bytes "$T/one.txt" >"$T/one.tok"
sigma-shard -o "$T/one" --val-fraction 0.05 "$T/one.tok" 2>"$T/one.err"
ok "an empty validation split is said at once, not found at training time" grep -q "the validation split is empty" "$T/one.err"
# one fingerprint rule for every tool (tokenizer_match): known ones must agree; an unknown one is taken with a warning
printf 'some text' >"$T/small.txt"
tokgen bytes --fingerprint 0123456789abcdef0123456789abcdef "$T/small.txt" >"$T/fa.tok"
tokgen bytes --fingerprint fedcba9876543210fedcba9876543210 "$T/small.txt" >"$T/fb.tok"
tokgen bytes "$T/small.txt" >"$T/f0.tok"
fails_with "inputs of two known tokenizers are refused, naming both" 1 "fb.tok: made with another tokenizer: fedcba.* differs from the first input's 012345" \
    sigma-shard -q -o "$T/mixfp" "$T/fa.tok" "$T/fb.tok"
ok "an input that records no tokenizer joins one that does" sh -c "sigma-shard -o '$T/mix0' '$T/fa.tok' '$T/f0.tok' 2>'$T/mix0.err'"
ok "with a warning that says so" grep -q "f0.tok records no tokenizer; taking it to be the first input's" "$T/mix0.err"

# ---- verify catches a flipped bit anywhere -----------------------------------------
flip() {   # file offset: flip the lowest bit of one byte in place
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
tokgen random --tokens 300 --vocab 70000 --seed 9 --mean-doc 40 >"$T/small.tok"
sigma-shard -q -o "$T/s" --shard-tokens 200 --val-fraction 0.2 "$T/small.tok"
ok "a clean set verifies" sigma-shard -q verify "$T/s"
missed=""
for f in "$T"/s/train-000000.shard "$T"/s/val-000000.shard; do
    size=$(wc -c <"$f")
    off=0
    while [ "$off" -lt "$size" ]; do
        cp "$f" "$T/orig"
        flip "$f" "$off"
        if sigma-shard verify "$T/s" 2>"$T/err"; then missed="$missed $(basename "$f"):$off"
        elif ! grep -q "$(basename "$f")" "$T/err"; then missed="$missed $(basename "$f"):$off(unnamed)"; fi
        cp "$T/orig" "$f"
        off=$((off + 1))
    done
done
is "verify catches a flipped bit in every byte of a train and a val shard, naming the shard" "${missed:-none}" none
for cmd in "sigma-shard cat $T/s" "sigma-shard cat --split train $T/s"; do
    flip "$T/s/train-000000.shard" 200
    fails_with "a corrupt shard stops '$(echo "$cmd" | cut -d' ' -f2-3)'" 1 "train-000000.shard" $cmd
    flip "$T/s/train-000000.shard" 200
done

# ---- a manifest that lies, a missing shard ---------------------------------------
cp -r "$T/s" "$T/lie"
jq '.splits.train.shards[0].tokens -= 1 | .splits.train.tokens -= 1 | .tokens -= 1' "$T/s/manifest.json" >"$T/lie/manifest.json"
fails_with "a manifest that lies about a shard's tokens" 1 "train-000000.shard: holds" sigma-shard verify "$T/lie"
jq '.documents += 1' "$T/s/manifest.json" >"$T/lie/manifest.json"
fails_with "a manifest whose totals do not add up" 1 "the splits hold" sigma-shard verify "$T/lie"
jq '.splits.val.shards[0].documents -= 1 | .splits.val.documents -= 1 | .splits.train.documents += 1 | .splits.train.shards[0].documents += 1' "$T/s/manifest.json" >"$T/lie/manifest.json"
fails "documents moved between splits in the manifest" sigma-shard verify "$T/lie"
jq '.splits.train.shards |= .[1:]' "$T/s/manifest.json" >"$T/lie/manifest.json"
fails "a shard dropped from the manifest" sigma-shard verify "$T/lie"
cp -r "$T/s" "$T/miss"; rm "$T/miss/train-000001.shard"
fails_with "a missing shard is named" 1 "train-000001.shard: missing shard" sigma-shard verify "$T/miss"
printf '{"format": "sigma-shards", "version": 1' >"$T/lie/manifest.json"
fails_with "a truncated manifest" 1 "manifest.json: invalid JSON" sigma-shard info "$T/lie"
fails_with "not a shard set" 1 "no manifest.json" sigma-shard verify "$T"
# manifest fields out of range, hostile names: refused, naming the field
for edit in '.level = 4294967297:field .level. is 4294967297' '.split_rule.val_fraction = -5:val_fraction. is -5' \
    '.token_width = 4294967298:token_width 4294967298 does not fit' '.shard_tokens = 1099511627776:field .shard_tokens. is 1099511627776' \
    '.splits.train.shards[0].file = "../x":"../x" is not a plain file name' \
    '.splits.train.shards[0].file = "/etc/passwd":is not a plain file name' \
    '.splits.train.shards[0].file = "..":".." is not a plain file name'; do
    jq "${edit%%:*}" "$T/s/manifest.json" >"$T/lie/manifest.json"
    fails_with "manifest: $(echo "${edit%%:*}" | cut -c1-40) is refused" 1 "${edit#*:}" sigma-shard verify "$T/lie"
done
rm -rf "$T/link"; cp -r "$T/s" "$T/link"; mv "$T/link/train-000000.shard" "$T/outside.shard"
ln -s "$T/outside.shard" "$T/link/train-000000.shard"
fails_with "a shard that is a link out of the set is refused" 1 "train-000000.shard is a symbolic link out of" sigma-shard verify "$T/link"
rm "$T/link/train-000000.shard"; mv "$T/outside.shard" "$T/link/t0.real"; ln -s t0.real "$T/link/train-000000.shard"
ok "a link inside the set is followed" sigma-shard -q verify "$T/link"
rm "$T/lie/manifest.json"; mkfifo "$T/lie/manifest.json"
{ cat /dev/zero >"$T/lie/manifest.json" 2>/dev/null & } 2>/dev/null; zero=$!
fails_with "a manifest.json without end (a FIFO fed by /dev/zero) stops at the size cap" 1 "manifest.json: larger than 268435456 bytes" \
    sigma-shard verify "$T/lie"
kill $zero 2>/dev/null; wait $zero 2>/dev/null; rm -f "$T/lie/manifest.json"
if [ "${SIGMA_SAN:-}" = 1 ]; then skip "--shard-tokens 2G allocates as tokens come" "ulimit -v and ASan do not mix"
else ok "--shard-tokens 2G allocates as tokens come, not 32 GB of index up front" \
    sh -c "ulimit -v 2000000 && sigma-shard -q -o '$T/big' --shard-tokens 2G '$T/r16.tok'"; fi

# ---- bad token streams ----------------------------------------------------------------
size=$(wc -c <"$T/r16.tok")
head -c $((size / 2)) "$T/r16.tok" >"$T/trunc.tok"
fails_with "a truncated stream" 1 "truncated" sigma-shard -q -o "$T/x" "$T/trunc.tok"
ok "leaves no shard set" test ! -e "$T/x"
head -c $((size - 3)) "$T/r16.tok" >"$T/trunc.tok"
fails_with "a stream cut inside its trailer" 1 "truncated" sigma-shard -q -o "$T/x" "$T/trunc.tok"
head -c 100000 /dev/urandom >"$T/random.bin"
fails_with "random bytes" 1 "not a sigma token stream" sigma-shard -q -o "$T/x" "$T/random.bin"
: >"$T/empty.bin"
fails_with "empty input" 1 "empty input" sigma-shard -q -o "$T/x" "$T/empty.bin"
missed=""
for off in $(seq 0 39); do   # the header: magic, version, vocabulary size, fingerprint, their checksum
    cp "$T/r16.tok" "$T/hdr.tok"; flip "$T/hdr.tok" "$off"
    sigma-shard -q -o "$T/x" "$T/hdr.tok" 2>/dev/null && { missed="$missed $off"; rm -rf "$T/x"; }
done
is "a flipped bit in any byte of the stream header is refused (the vocabulary size was covered by no checksum)" "${missed:-none}" none
cp "$T/r16.tok" "$T/vocab.tok"; printf '\144\000' | dd of="$T/vocab.tok" bs=1 seek=12 conv=notrunc status=none
fails_with "a vocabulary size changed in the header fails its checksum" 1 "header checksum mismatch \\(byte 32\\)" \
    sigma-shard -q -o "$T/x" "$T/vocab.tok"
{ head -c 8 "$T/r16.tok"; printf '\001\000\000\000\144\000\000\000'; tail -c +17 "$T/r16.tok" | head -c 16; tail -c +41 "$T/r16.tok"; } >"$T/v1.tok"
fails_with "a version 1 stream (no header checksum) is read: a token at or above its vocabulary" 1 "outside the vocabulary of 100" \
    sigma-shard -q -o "$T/x" "$T/v1.tok"
{ head -c 8 "$T/r16.tok"; printf '\001\000\000\000'; tail -c +13 "$T/r16.tok" | head -c 20; tail -c +41 "$T/r16.tok"; } >"$T/v1ok.tok"
ok "a version 1 stream is still read" sigma-shard -q -o "$T/v1set" "$T/v1ok.tok"
cp "$T/r16.tok" "$T/bad.tok"; flip "$T/bad.tok" 5000
fails_with "a corrupt token in the stream (checksum)" 1 "checksum mismatch" sigma-shard -q -o "$T/x" "$T/bad.tok"
cat "$T/r16.tok" "$T/r16.tok" >"$T/twice.tok"
fails_with "data after the trailer" 1 "data after the trailer" sigma-shard -q -o "$T/x" "$T/twice.tok"
ok "no partial output after any of these" sh -c "! ls -d '$T'/x* 2>/dev/null"

# ---- output directory: refuse, force, full disk --------------------------------------
fails_with "an existing directory is refused" 1 "already exists" sigma-shard -q -o "$T/a" "$T/r16.tok"
ok "and left as it was" diff -r "$T/a" "$T/b"
ok "--force replaces it" sigma-shard -q -f -o "$T/a" --val-fraction 0 "$T/small.tok"
is "with the new set" "$(jq .tokens "$T/a/manifest.json")" 300
fails "--force with bad input" sigma-shard -q -f -o "$T/a" "$T/trunc.tok"
is "keeps the old set" "$(jq .tokens "$T/a/manifest.json")" 300
fails_with "a full disk (ulimit -f) is an error" 1 "write error|File too large" sh -c "ulimit -f 200; exec sigma-shard -q -o '$T/full' --level 0 '$T/r32.tok'"
ok "leaves no shard set and no temporary directory" sh -c "! ls -d '$T'/full* 2>/dev/null"
fails_with "--force on a full disk" 1 "write error|File too large" sh -c "ulimit -f 200; exec sigma-shard -q -f -o '$T/a' --level 0 '$T/r32.tok'"
ok "keeps the old set intact" sigma-shard -q verify "$T/a"

# ---- memory holds one shard per split, whatever the input length ------------------------
if [ "${SIGMA_SAN:-}" = 1 ]; then
    skip "memory bounded by a shard" "RSS under AddressSanitizer says nothing"
else
    rss() { /usr/bin/time -f %M sh -c "tokgen random --tokens $1 --vocab 70000 --seed 4 | sigma-shard -q -o '$T/m$1' --shard-tokens 100000" 2>&1 >/dev/null | tail -n 1; }
    small=$(rss 200000); large=$(rss 20000000)
    ok "memory bounded by a shard: 2e5 tokens ${small} KB, 2e7 tokens ${large} KB" test "$large" -lt $((small + 4096))
fi

# ---- command line ------------------------------------------------------------------------
fails_with "no -o is a usage error" 2 "missing -o" sigma-shard "$T/r16.tok"
fails_with "a bad number is a usage error" 2 "--shard-tokens" sigma-shard -o "$T/y" --shard-tokens lots
fails_with "--level out of range" 2 "out of range" sigma-shard -o "$T/y" --level 30
fails_with "--split with a bad name" 2 "train or val" sigma-shard cat "$T/s" --split test
ok "--help" sigma-shard --help
ok "--version" sh -c 'sigma-shard --version | grep -q "^sigma-shard [0-9]"'
done_testing
