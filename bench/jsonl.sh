#!/bin/sh
# JSONL parsing speed: cJSON vs jansson vs libjq's jv on ~100 MB of JSON
# Lines made from real text (tinyshakespeare words, escapes, non-ASCII).
# Needs libcjson-dev libjansson-dev libjq-dev.
set -eu
out=${BENCH_OUT:-bench/out}; mkdir -p "$out"
data=${SIGMA_DATA:-../shared/data}
[ -f "$out/docs.jsonl" ] || python3 - "$data/corpora/tinyshakespeare.txt" "$out/docs.jsonl" <<'PY'
import json, random, sys
random.seed(1)
words = open(sys.argv[1]).read().split()
with open(sys.argv[2], 'w') as f:
    n = 0
    while n < 100_000_000:
        t = ' '.join(random.choice(words) for _ in range(random.randint(50, 400)))
        if random.random() < 0.1: t += ' caf\u00e9 \u4e2d\u6587 "q" \\ tab\t nl\n'
        s = json.dumps({"id": n, "url": "http://x/%d" % n, "text": t, "meta": {"a": [1, 2, 3], "lang": "en"}},
                       ensure_ascii=random.random() < 0.5)
        f.write(s + '\n'); n += len(s) + 1
PY
cc -O2 bench/jsonl.c -o "$out/jsonl-bench" -lcjson -ljansson -ljq
for lib in 0 1 2; do "$out/jsonl-bench" $lib "$out/docs.jsonl"; done
