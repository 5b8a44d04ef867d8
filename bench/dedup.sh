#!/bin/sh
# sigma-dedup beside datatrove's MinHash pipeline (FineWeb's parameters) on
# real text (Debian's documentation, bench/dedup_corpus.py): MB/s of the
# signatures stage, of the stages over shards and of one process, on one
# core and on all, and the agreement on what is removed.
#   bench/dedup.sh [MEGABYTES]            (default 50)
# datatrove runs when DATATROVE_PYTHON names a python with it installed:
#   python3 -m venv /tmp/dt && /tmp/dt/bin/pip install datatrove spacy 'xxhash<4' tokenizers regex orjson
#   DATATROVE_PYTHON=/tmp/dt/bin/python bench/dedup.sh
# OLD_DEDUP names another sigma-dedup with stages to time beside this one
# (the speed before a change). Each sigma row is the best of 3 runs by CPU
# time; the machine may be shared, so the load is printed with each row and
# ratios between rows of one run say more than the absolute numbers.
# Results are printed as markdown rows; bench/dedup.md keeps a run's table.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${SIGMA_BIN:-$here/../bin}
mb=${1:-50}
work=${TMPDIR:-/tmp}/sigma-dedup-bench
mkdir -p "$work"
corpus=$work/corpus-$mb.jsonl
[ -s "$corpus" ] || python3 "$here/dedup_corpus.py" "$corpus" "$mb"
n=$(wc -l < "$corpus" | tr -d ' ')
bytes=$(wc -c < "$corpus" | tr -d ' ')
cores=$(nproc)
echo "# corpus: $corpus, $n documents, $bytes bytes; $(uname -m), $cores cores, $(date -u +%Y-%m-%dT%H:%MZ)"
export LC_ALL=C

# row NAME THREADS COMMAND...: the best of 3 runs by CPU seconds (user + system)
row() {
    name=$1 j=$2; shift 2
    best= bw= load=$(cut -d' ' -f1 /proc/loadavg)
    for k in 1 2 3; do
        /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" > /dev/null
        read -r e u s < "$work/time"
        c=$(echo "$u + $s" | bc)
        if [ -z "$best" ] || [ "$(echo "$c < $best" | bc)" = 1 ]; then best=$c bw=$e; fi
    done
    awk -v n="$name" -v j="$j" -v w="$bw" -v c="$best" -v b="$bytes" -v l="$load" \
        'BEGIN { printf "| %s | %s | %.2f | %.2f | %.1f | %.1f | %s |\n", n, j, w, c, b / 1e6 / c, b / 1e6 / w, l }'
}
echo "| run | threads | wall s | CPU s | MB/s of CPU | MB/s of wall | load |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
dd=$bin/sigma-dedup
[ -n "${OLD_DEDUP:-}" ] && row "sigma-dedup signatures, before ($OLD_DEDUP)" 1 "$OLD_DEDUP" signatures -q -f -j 1 -o "$work/old.sig" "$corpus"
row "sigma-dedup signatures" 1 "$dd" signatures -q -f -j 1 -o "$work/one.sig" "$corpus"
row "sigma-dedup signatures" "$cores" "$dd" signatures -q -f -o "$work/one.sig" "$corpus"
row "sigma-dedup, one process, --mode near" 1 "$dd" -q -j 1 --mode near "$corpus"
row "sigma-dedup, one process (exact, then near)" 1 "$dd" -q -j 1 "$corpus"
row "sigma-dedup, one process (exact, then near)" "$cores" "$dd" -q "$corpus"

# the stages over the corpus cut in 4 shards, through pipelines/dedup.mk
rm -rf "$work/shards" && mkdir -p "$work/shards"
split -n l/4 -d --additional-suffix=.jsonl "$corpus" "$work/shards/part"
stages='rm -rf "$1" && exec make -s -j "$2" -f "$3" IN="$4" OUT="$1" SIGMA_BIN="$5"'
row "sigma-dedup stages, 4 shards (make -j 1: every stage)" 1 \
    sh -c "$stages" sh "$work/stages" 1 "$here/../pipelines/dedup.mk" "$work/shards" "$bin"
row "sigma-dedup stages, 4 shards (make -j $cores)" "$cores" \
    sh -c "$stages" sh "$work/stages" "$cores" "$here/../pipelines/dedup.mk" "$work/shards" "$bin"
"$dd" -q $(ls "$work"/shards/*) | cmp -s - "$(cat "$work"/stages/kept/* > "$work/kept"; echo "$work/kept")" &&
    echo "# the stages' kept documents are one process's, byte for byte" || echo "# the stages' kept documents DIFFER from one process's"

if [ -n "${DATATROVE_PYTHON:-}" ]; then
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$DATATROVE_PYTHON" "$here/dedup_datatrove.py" "$corpus" "$work/datatrove" "$work/datatrove.removed" \
        > "$work/datatrove.log" 2>&1
    awk -v b="$bytes" -v l="$load" '$1 == "signatures" || $1 == "total" {
        printf "| datatrove MinHash %s | 1 | %.2f | %.2f | %.2f | %.2f | %s |\n", $1 == "total" ? "(signatures + buckets + clusters)" : "signatures", $2, $3, b / 1e6 / $3, b / 1e6 / $2, l }' \
        "$work/datatrove.log"
    grep -E '^(signatures|buckets|clusters) ' "$work/datatrove.log" | sed 's/^/# datatrove stage seconds (wall, CPU): /'
    "$dd" -q -j 1 --mode near --removed "$work/removed-near.jsonl" "$corpus" > /dev/null
    python3 "$here/dedup_agree.py" "$n" "$work/removed-near.jsonl" "$work/datatrove.removed" | sed 's/^/# /'
fi
