#!/bin/sh
# sigma-dedup beside datatrove's MinHash pipeline (FineWeb's parameters) on
# about 200 MB of real text (Debian's documentation, bench/dedup_corpus.py):
# MB/s on one core and on all cores, and the agreement on what is removed.
#   bench/dedup.sh [MEGABYTES]            (default 200)
# datatrove runs when DATATROVE_PYTHON names a python with it installed:
#   python3 -m venv /tmp/dt && /tmp/dt/bin/pip install datatrove spacy 'xxhash<4' tokenizers regex orjson
#   DATATROVE_PYTHON=/tmp/dt/bin/python bench/dedup.sh
# Results are printed as markdown rows; bench/dedup.md keeps a run's table.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${SIGMA_BIN:-$here/../bin}
mb=${1:-200}
work=${TMPDIR:-/tmp}/sigma-dedup-bench
mkdir -p "$work"
corpus=$work/corpus-$mb.jsonl
[ -s "$corpus" ] || python3 "$here/dedup_corpus.py" "$corpus" "$mb"
n=$(wc -l < "$corpus" | tr -d ' ')
bytes=$(wc -c < "$corpus" | tr -d ' ')
cores=$(nproc)
echo "# corpus: $corpus, $n documents, $bytes bytes; $(uname -m), $cores cores, $(date -u +%Y-%m-%dT%H:%MZ)"

row() {   # name threads mode: the best of 3 runs (the machine may be shared)
    name=$1 j=$2 mode=$3
    best=
    for k in 1 2 3; do
        "$bin/sigma-dedup" -q -j "$j" --mode "$mode" --stats "$work/stats-$k.json" \
            --removed "$work/removed-$mode-$j.jsonl" "$corpus" > /dev/null
        s=$(jq .seconds "$work/stats-$k.json")
        if [ -z "$best" ] || awk "BEGIN { exit !($s < $best) }"; then best=$s; cp "$work/stats-$k.json" "$work/stats.json"; fi
    done
    jq -r --arg name "$name" '"| \($name) | \(.threads) | \(.seconds * 100 | round / 100) | \(.mb_per_s * 10 | round / 10) | \(.exact_removed + .near_removed) |"' "$work/stats.json"
}
echo "| run | threads | seconds | MB/s | removed |"
echo "| --- | --- | --- | --- | --- |"
row "sigma-dedup --mode near" 1 near
row "sigma-dedup --mode near" "$cores" near
row "sigma-dedup (exact + near)" 1 both
row "sigma-dedup (exact + near)" "$cores" both
row "sigma-dedup --mode exact" 1 exact

if [ -n "${DATATROVE_PYTHON:-}" ]; then
    "$DATATROVE_PYTHON" "$here/dedup_datatrove.py" "$corpus" "$work/datatrove" "$work/datatrove.removed" \
        > "$work/datatrove.log" 2>&1
    secs=$(awk '$1 == "total" {print $2}' "$work/datatrove.log")
    awk -v s="$secs" -v b="$bytes" -v n="$(wc -l < "$work/datatrove.removed")" \
        'BEGIN { printf "| datatrove MinHash (signatures + buckets + clusters) | 1 | %.2f | %.2f | %d |\n", s, b / 1e6 / s, n }'
    grep -E '^(signatures|buckets|clusters) ' "$work/datatrove.log" | sed 's/^/# datatrove stage seconds: /'
    python3 "$here/dedup_agree.py" "$n" "$work/removed-near-1.jsonl" "$work/datatrove.removed" | sed 's/^/# /'
fi
