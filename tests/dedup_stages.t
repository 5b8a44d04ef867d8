#!/bin/sh
# sigma-dedup's stages (signatures, exact, buckets, clusters, filter) and
# pipelines/dedup.mk, tokenize.mk: the same result as the one-process mode
# on generated text with planted duplicates and on real text, every mode
# and format; a rerun does only what is missing; bad or cut stage files
# are refused naming file and byte; memory stays under a stated bound on an
# input several times larger; tokenizing the shards in parallel gives the
# shard set of one process.
. "$(dirname "$0")/lib.sh"

gen="python3 $SIGMA_ROOT/tests/dedup_stages_data.py"
DEDUP_MK="make --no-print-directory -s -f $SIGMA_ROOT/pipelines/dedup.mk SIGMA_BIN=$SIGMA_BIN"
export LC_ALL=C

# the shards of a directory in name order, and their documents as one stream
shards() { ls "$1" | sed "s|^|$1/|"; }
concat() { for f in $(shards "$1"); do case $f in *.zst) zstd -dcq "$f" ;; *) cat "$f" ;; esac; done; }

# every stage by hand: stages IN OUT PARTITIONS BANDS [OPTIONS...] (the
# options go to signatures; 0 partitions or bands: none of that stage)
stages() {
    in=$1 out=$2 np=$3 nb=$4; shift 4
    mkdir -p "$out/sig" "$out/exact" "$out/buckets" "$out/kept" "$out/removed"
    for f in $(ls "$in"); do sigma-dedup signatures -q -j 1 "$@" -o "$out/sig/$f.sig" "$in/$f" || return 1; done
    i=0; while [ $i -lt "$np" ]; do sigma-dedup exact -q --partition $i -o "$out/exact/$i" "$out"/sig/* || return 1; i=$((i + 1)); done
    i=0; while [ $i -lt "$nb" ]; do sigma-dedup buckets -q --band $i -o "$out/buckets/$i" "$out"/sig/* || return 1; i=$((i + 1)); done
    sigma-dedup clusters -q --stats "$out/stats.json" -o "$out/removal" "$out"/sig/* $(ls "$out"/exact/* "$out"/buckets/* 2>/dev/null) || return 1
    for f in $(ls "$in"); do
        sigma-dedup filter -q --removal "$out/removal" --removed "$out/removed/$f" -o "$out/kept/$f" "$in/$f" || return 1
    done
}

# same_as_one "name" IN OUT [OPTIONS...]: the stages' kept documents and
# report are the one-process mode's over the same shards in order
same_as_one() {
    name=$1 in=$2 out=$3; shift 3
    sigma-dedup -q "$@" --removed "$out/one.removed" --stats "$out/one.json" $(shards "$in") > "$out/one.kept"
    concat "$out/kept" | cmp -s - "$out/one.kept"
    is "$name: kept documents identical to one process" "$?" 0
    concat "$out/removed" | cmp -s - "$out/one.removed"
    is "$name: --removed reports identical" "$?" 0
    is "$name: the same counts" "$(jq -c '[.documents_out, .exact_removed, .near_removed, .bad_skipped]' "$out/stats.json")" \
        "$(jq -c '[.documents_out, .exact_removed, .near_removed, .bad_skipped]' "$out/one.json")"
}

# ---- generated text with planted duplicates, through pipelines/dedup.mk -----------
$gen planted "$T/p" 4 2400
zstd -q --rm "$T/p/shard-2.jsonl"
# --memory 20k: runs of about 80 documents, so the merges have many
$DEDUP_MK -j2 IN="$T/p" OUT="$T/pm" REPORT=1 FLAGS="--memory 20k" > "$T/pm.log" 2>&1
is "make -j2 -f pipelines/dedup.mk: exit 0" "$?" 0
ok "four shards, one of them empty, one .zst" test -f "$T/pm/kept/shard-2.jsonl.zst" -a ! -s "$T/pm/kept/shard-1.jsonl"
sigma-dedup -q --removed "$T/one.removed" --stats "$T/one.json" $(shards "$T/p") > "$T/one.kept"
concat "$T/pm/kept" | cmp -s - "$T/one.kept"
is "dedup.mk: kept documents byte for byte those of one process" "$?" 0
concat "$T/pm/removed" | cmp -s - "$T/one.removed"
is "dedup.mk: the filters' --removed reports are one process's report" "$?" 0
counts='[.documents_in, .documents_out, .exact_removed, .near_removed, .too_short_for_minhash]'
is "clusters --stats counts as one process" "$(jq -c "$counts" "$T/pm/stats.json")" "$(jq -c "$counts" "$T/one.json")"
ok "planted duplicates found: over 200 exact and 200 near" \
    jq -e '.exact_removed > 200 and .near_removed > 200' "$T/one.json"
ok "the signature files hold many runs (--memory 20k)" \
    test "$(jq '.documents_in' "$T/one.json")" -gt 2000 -a "$(wc -c < "$T/pm/sig/shard-0.jsonl.sig")" -gt 100000
sigma-dedup -q -j 2 $(shards "$T/p") | cmp -s - "$T/one.kept"
is "one process with two threads: the same" "$?" 0
sigma-dedup signatures -q -j 2 --memory 20k -o "$T/j2.sig" "$T/p/shard-0.jsonl"
cmp -s "$T/j2.sig" "$T/pm/sig/shard-0.jsonl.sig"
is "signatures with two threads: the same file, byte for byte" "$?" 0
fails_with "a stage on standard input: usage error" 2 "reads files, not standard input" sigma-dedup signatures -o "$T/x" -

# ---- a rerun does only what is missing -----------------------------------------------
listing() { find "$T/pm" -type f -newer "$1" | sort; }
touch "$T/mark"; sleep 1
$DEDUP_MK -j2 IN="$T/p" OUT="$T/pm" REPORT=1 FLAGS="--memory 20k" > /dev/null 2>&1
is "a second make changes no file" "$(listing "$T/mark")" ""
# a crash while buckets ran: two bands and a partition not written, nothing after
rm -r "$T/pm/buckets/5.pairs" "$T/pm/buckets/9.pairs" "$T/pm/exact/3.exact" "$T/pm/removal.list" "$T/pm/kept" "$T/pm/removed"
$DEDUP_MK -j2 IN="$T/p" OUT="$T/pm" REPORT=1 FLAGS="--memory 20k" TIME_LOG="$T/rerun.log" > /dev/null 2>&1
is "after a crash, make again: exit 0" "$?" 0
concat "$T/pm/kept" | cmp -s - "$T/one.kept"
is "after a crash, the same result" "$?" 0
is "after a crash, only what was missing is made" "$(cut -d' ' -f1,2 "$T/rerun.log" | sort | tr '\n' ' ')" \
    "buckets 5 buckets 9 clusters all exact 3 filter shard-0.jsonl filter shard-1.jsonl filter shard-2.jsonl.zst filter shard-3.jsonl "
ls "$T/pm"/*/*.tmp.* > /dev/null 2>&1; is "no temporary file left" "$?" 2
sigma-dedup signatures -j 1 --memory 20k -o "$T/pm/sig/shard-0.jsonl.sig" "$T/p/shard-0.jsonl" 2> "$T/skip.err"
ok "a stage whose output is complete says so and does nothing" grep -q "complete: skipped" "$T/skip.err"
sigma-dedup buckets --band 5 -o "$T/pm/buckets/5.pairs" "$T/pm"/sig/*.sig 2> "$T/skip.err"
ok "buckets: complete, skipped" grep -q "complete: skipped" "$T/skip.err"
sigma-dedup buckets -f --band 5 -o "$T/pm/buckets/5.pairs" "$T/pm"/sig/*.sig 2> "$T/skip.err"
ok "--force redoes it" grep -q "candidate pairs" "$T/skip.err"
cp "$T/pm/sig/shard-0.jsonl.sig" "$T/copy.sig"
sigma-dedup signatures -j 1 --bands 7 -o "$T/copy.sig" "$T/p/shard-0.jsonl" 2> "$T/skip.err"
ok "other parameters: made again" grep -q "remaking it" "$T/skip.err"

# ---- modes and formats, stage by stage -------------------------------------------------
stages "$T/p" "$T/s1" 3 0 --mode exact --partitions 3 && same_as_one "--mode exact, 3 partitions" "$T/p" "$T/s1" --mode exact
stages "$T/p" "$T/s2" 0 5 --mode near --bands 5 --rows 4 && same_as_one "--mode near, 5 bands of 4" "$T/p" "$T/s2" --mode near --bands 5 --rows 4
stages "$T/p" "$T/s3" 2 14 --normalize none --partitions 2 && same_as_one "--normalize none" "$T/p" "$T/s3" --normalize none
mkdir -p "$T/lines" "$T/nul"
for k in 0 1 3; do jq -r .text "$T/p/shard-$k.jsonl" > "$T/lines/s$k.txt"; done
printf 'last line without a newline' >> "$T/lines/s3.txt"
stages "$T/lines" "$T/s4" 16 14 --lines && same_as_one "--lines, the last line without a newline" "$T/lines" "$T/s4" --lines
for k in 0 1 3; do jq -j '.text + "\n" + .text + "\u0000"' "$T/p/shard-$k.jsonl" > "$T/nul/s$k.bin"; done
stages "$T/nul" "$T/s5" 16 14 --nul && same_as_one "--nul" "$T/nul" "$T/s5" --nul
mkdir -p "$T/bad"
cp "$T/p/shard-0.jsonl" "$T/p/shard-3.jsonl" "$T/bad/"
sed -i '5s/.*/{"text": broken/; 9s/.*/{"id": 3}/; 12s/.*/[1, 2]/' "$T/bad/shard-3.jsonl"
fails_with "a bad record without --skip-bad: the file and line, as one process says" 1 "shard-3.jsonl, line 5: invalid JSON" \
    sigma-dedup signatures -o "$T/bad.sig" "$T/bad/shard-3.jsonl"
stages "$T/bad" "$T/s6" 16 14 --skip-bad 2> /dev/null && same_as_one "--skip-bad, three bad records" "$T/bad" "$T/s6" --skip-bad
ok "--field: another field" sh -c "jq -c '{body: .text}' '$T/p/shard-0.jsonl' > '$T/field.jsonl' &&
    sigma-dedup signatures -q --field body -o '$T/field.sig' '$T/field.jsonl'"

# ---- refusals ------------------------------------------------------------------------------
S=$T/pm/sig
fails_with "--partition beyond the signatures': usage error" 2 "--partition 16" sigma-dedup exact --partition 16 -o "$T/x" "$S"/*.sig
fails_with "an option of another stage: usage error naming it" 2 "--band is an option of buckets, not of exact" \
    sigma-dedup exact --band 1 --partition 0 -o "$T/x" "$S"/*.sig
fails_with "--verify with a stage: refused" 2 "--verify is an option of deduplicating in one process" \
    sigma-dedup signatures --verify 0.8 -o "$T/x" "$T/p/shard-0.jsonl"
fails_with "-o a device: refused" 1 "must be a regular file" sigma-dedup signatures -o /dev/null "$T/p/shard-0.jsonl"
head -c 5000 "$S/shard-3.jsonl.sig" > "$T/cut.sig"
fails_with "a cut signature file: refused, 'truncated'" 1 "cut.sig: .*truncated" sigma-dedup buckets --band 0 -o "$T/x" "$T/cut.sig"
cp "$S/shard-3.jsonl.sig" "$T/flip.sig"
printf '\377' | dd of="$T/flip.sig" bs=1 seek=200 conv=notrunc 2> /dev/null
fails_with "a flipped byte in a section: checksum mismatch naming the section's byte" 1 "flip.sig: checksum mismatch in the band section at byte 64" \
    sigma-dedup buckets --band 0 -o "$T/x" "$T/flip.sig"
cp "$S/shard-3.jsonl.sig" "$T/meta.sig"
printf '\377' | dd of="$T/meta.sig" bs=1 seek=$(($(wc -c < "$T/meta.sig") - 10)) conv=notrunc 2> /dev/null
fails_with "a flipped byte in the meta: refused" 1 "meta.sig: meta checksum mismatch" sigma-dedup exact --partition 0 -o "$T/x" "$T/meta.sig"
fails_with "not a stage file: bad magic" 1 "shard-0.jsonl: not a sigma-dedup stage file \(bad magic at byte 0\)" \
    sigma-dedup buckets --band 0 -o "$T/x" "$T/p/shard-0.jsonl"
sigma-dedup signatures -q --bands 10 -o "$T/b10.sig" "$T/p/shard-3.jsonl"
fails_with "signatures made with other parameters: refused, naming the difference" 1 "b10.sig was made with other parameters than .*: --bands 10, not 14" \
    sigma-dedup buckets --band 0 -o "$T/x" "$S/shard-0.jsonl.sig" "$T/b10.sig"
mkdir -p "$T/dup1" "$T/dup2"; cp "$T/p/shard-0.jsonl" "$T/dup1/x.jsonl"; cp "$T/p/shard-3.jsonl" "$T/dup2/x.jsonl"
sigma-dedup signatures -q -o "$T/dup1.sig" "$T/dup1/x.jsonl"; sigma-dedup signatures -q -o "$T/dup2.sig" "$T/dup2/x.jsonl"
fails_with "two shards of the same name: refused" 1 "two inputs named x.jsonl" sigma-dedup buckets --band 0 -o "$T/x" "$T/dup1.sig" "$T/dup2.sig"
P=$T/pm
fails_with "clusters without band 5: refused" 1 "no pairs file for band 5" \
    sigma-dedup clusters -o "$T/x" "$P"/sig/* "$P"/exact/* $(ls "$P"/buckets/* | grep -v /5.pairs)
fails_with "clusters with a band twice: refused" 1 "are both the pairs of band 5" \
    sigma-dedup clusters -o "$T/x" "$P"/sig/* "$P"/exact/* "$P"/buckets/* "$P/buckets/5.pairs"
fails_with "clusters without the signature files: refused" 1 "needs the signature files" \
    sigma-dedup clusters -o "$T/x" "$P"/exact/* "$P"/buckets/*
fails_with "clusters with the signatures in another order: refused" 1 "other signature files than those given, or in another order" \
    sigma-dedup clusters -o "$T/x" $(ls "$P"/sig/* | sort -r) "$P"/exact/* "$P"/buckets/*
fails_with "a removal list as a signature file: refused, naming both kinds" 1 "a removal list, not a signature file" \
    sigma-dedup exact --partition 0 -o "$T/x" "$P/removal.list"
mkdir -p "$T/other"; sed 's/e/E/' "$T/p/shard-0.jsonl" > "$T/other/shard-0.jsonl"
fails_with "filter on another text under the shard's name: refused" 1 "is not the input the removal list .* was made from" \
    sigma-dedup filter --removal "$P/removal.list" -o "$T/x" "$T/other/shard-0.jsonl"
ok "... and leaves no output" test ! -e "$T/x"
fails_with "filter on a shard the list does not name: refused" 1 "no shard named field.jsonl" \
    sigma-dedup filter --removal "$P/removal.list" -o "$T/x" "$T/field.jsonl"

# ---- memory: bounded, on an input several times larger ----------------------------------
# sigma-dedup(1) MEMORY AND LIMITS: signatures takes --memory, an 8 MB read
# buffer, about 5 times the longest document (here 2 kB) and 3 MB of
# program; filter the read buffer, 1 MB and zstd's; exact and buckets
# --memory at most.
if [ "${SIGMA_SAN:-}" = 1 ]; then
    skip "memory bounded by --memory, not by the input" "RSS under AddressSanitizer says nothing"
else
    $gen big "$T/big.jsonl" 80
    mb=$(($(wc -c < "$T/big.jsonl") / 1000000))
    rss() { cat "$1"; }
    /usr/bin/time -f %M -o "$T/rss.sig" sigma-dedup signatures -q -j 1 --memory 8M -o "$T/big.sig" "$T/big.jsonl"
    ok "signatures --memory 8M of $mb MB: peak $(rss "$T/rss.sig") KB, under 24 MB" test "$(rss "$T/rss.sig")" -lt 24000
    /usr/bin/time -f %M -o "$T/rss.bk" sigma-dedup buckets -q --memory 4M --band 0 -o "$T/big.pairs" "$T/big.sig"
    ok "buckets --memory 4M: peak $(rss "$T/rss.bk") KB, under 8 MB" test "$(rss "$T/rss.bk")" -lt 8000
    sigma-dedup signatures -q --mode exact --partitions 1 -o "$T/bige.sig" "$T/big.jsonl"
    /usr/bin/time -f %M -o "$T/rss.ex" sigma-dedup exact -q --memory 4M --partition 0 -o "$T/bige.exact" "$T/bige.sig"
    ok "exact --memory 4M: peak $(rss "$T/rss.ex") KB, under 8 MB" test "$(rss "$T/rss.ex")" -lt 8000
    sigma-dedup clusters -q -o "$T/big.removal" "$T/bige.sig" "$T/bige.exact"
    /usr/bin/time -f %M -o "$T/rss.fl" sigma-dedup filter -q --removal "$T/big.removal" -o "$T/big.kept.zst" "$T/big.jsonl"
    ok "filter of $mb MB to .zst: peak $(rss "$T/rss.fl") KB, under 24 MB" test "$(rss "$T/rss.fl")" -lt 24000
    timeout 0.3 sigma-dedup signatures -q -j 1 -o "$T/cut-short.sig" "$T/big.jsonl"
    is "signatures stopped by SIGTERM half way: exit 124 (timeout)" "$?" 124
    ok "... and no output, not even a temporary one" sh -c "! ls '$T'/cut-short.sig* 2> /dev/null"
    rm -f "$T"/big*
fi

# ---- real text -----------------------------------------------------------------------------------
if [ ! -f "$SIGMA_DATA/eval/lambada_test.jsonl" ] || [ ! -f "$SIGMA_DATA/corpora/tinyshakespeare.txt" ]; then
    skip "real text: the stages against one process" "no lambada_test.jsonl and tinyshakespeare.txt in \$SIGMA_DATA ($SIGMA_DATA)"
else
    $gen real "$T/r" 3 "$SIGMA_DATA"
    zstd -q --rm "$T/r/shard-0.jsonl"
    $DEDUP_MK -j2 IN="$T/r" OUT="$T/rm" REPORT=1 > /dev/null 2>&1
    same_as_one "real text (LAMBADA, Shakespeare, planted copies), make -j2" "$T/r" "$T/rm"
fi

# ---- tokenizing the kept shards in parallel: the shard set of one process -------------------
sigma-tokenize train -q --jsonl --vocab-size 400 --pattern gpt2 -o "$T/tok.txt" "$T/one.kept"
make --no-print-directory -s -j2 -f "$SIGMA_ROOT/pipelines/tokenize.mk" SIGMA_BIN="$SIGMA_BIN" IN="$T/pm/kept" OUT="$T/tk" \
    TOKENIZER="$T/tok.txt" SHARD_FLAGS="--shard-tokens 20k --val-fraction 0.1"
is "make -j2 -f pipelines/tokenize.mk: exit 0" "$?" 0
sigma-tokenize encode -q -t "$T/tok.txt" --jsonl $(shards "$T/pm/kept") |
    sigma-shard -q -o "$T/one-shards" --shard-tokens 20k --val-fraction 0.1
is "the shard set of the streams has the shards of one process's stream (same files, same split)" \
    "$(jq -c .splits "$T/tk/shards/manifest.json")" "$(jq -c .splits "$T/one-shards/manifest.json")"
sigma-shard cat "$T/tk/shards" | cmp -s - "$(sigma-shard cat "$T/one-shards" > "$T/one.tok"; echo "$T/one.tok")"
is "sigma-shard cat: the same tokens" "$?" 0

done_testing
