#!/usr/bin/env python3
"""The report of `make dedup-demo` (pipelines/dedup-demo.mk) as markdown:
each stage's tasks, time and peak memory against the stated bound, the
one-process runs beside them, and whether the results are identical.

    bench/dedup_demo_report.py OUT BOUND_MB
"""
import glob
import json
import os
import sys
from collections import OrderedDict


def main():
    out, bound = sys.argv[1], float(sys.argv[2])
    stages = OrderedDict()
    for line in open(os.path.join(out, "times.log")):
        f = line.split()
        if len(f) != 6 or f[3] != "s":
            continue   # a line of /usr/bin/time about a failed command
        s = stages.setdefault(f[0], {"n": 0, "sum": 0.0, "max": 0.0, "kb": 0})
        s["n"] += 1
        s["sum"] += float(f[2])
        s["max"] = max(s["max"], float(f[2]))
        s["kb"] = max(s["kb"], int(f[4]))
    load = OrderedDict(l.split(None, 1) for l in open(os.path.join(out, "load.log")))
    st = json.load(open(os.path.join(out, "dedup", "stats.json")))
    one = json.load(open(os.path.join(out, "one.json")))
    man = json.load(open(os.path.join(out, "tok", "shards", "manifest.json")))
    size = lambda pat: sum(os.path.getsize(p) for p in glob.glob(os.path.join(out, pat)))
    mb = st["bytes_in"] / 1e6
    print("# make dedup-demo\n")
    print(open(os.path.join(out, "corpus.txt")).read().strip() + "\n")
    print("Input: %d shards, %.0f MB of JSON Lines (%.0f MB as .zst); %d documents in, %d kept: %d exact and %d near "
          "duplicates removed.\n" % (st["shards"], mb, size("in/*.zst") / 1e6, st["documents_in"], st["documents_out"],
                                      st["exact_removed"], st["near_removed"]))
    print("| run | tasks | wall s (all tasks) | task s, sum | task s, max | peak memory MB | load (1, 5, 15 min) at start |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    phases = {"signatures": "dedup-start", "exact": "dedup-start", "buckets": "dedup-start", "clusters": "dedup-start",
              "filter": "dedup-start", "make-dedup": "dedup-start", "one-process": "one-start", "encode": "tokenize-start",
              "shard": "tokenize-start", "make-tokenize": "tokenize-start", "one-tokenize": "tokenize-end"}
    worst = 0
    for name, s in stages.items():
        wall = "%.1f" % s["max"] if name.startswith(("make-", "one-")) else ""
        print("| %s | %d | %s | %.1f | %.1f | %.0f | %s |" % (name, s["n"], wall, s["sum"], s["max"], s["kb"] / 1e3,
                                                            load.get(phases.get(name, ""), "").strip()))
        if not name.startswith(("make-", "one-")):
            worst = max(worst, s["kb"] / 1e3)
    d, o = stages["make-dedup"]["max"], stages["one-process"]["max"]
    print("\nDedup: the stages with make -j2 took %.1f s (%.1f MB/s), one process with 2 threads %.1f s (%.1f MB/s), "
          "%.2fx; one process peaked at %.0f MB, the largest stage task at %.0f MB (bound %.0f MB: %s)."
          % (d, mb / d, o, mb / o, o / d, stages["one-process"]["kb"] / 1e3, worst, bound,
             "met" if worst <= bound else "EXCEEDED"))
    print("Kept documents, stages against one process: %s; the same counts: %s."
          % (open(os.path.join(out, "one-vs-stages.txt")).read().strip(),
             "yes" if all(st[k] == one[k] for k in ("documents_out", "exact_removed", "near_removed")) else "NO"))
    print("Signature files: %.0f MB; kept: %.0f MB as .zst.\n" % (size("dedup/sig/*") / 1e6, size("dedup/kept/*") / 1e6))
    t, ot = stages["make-tokenize"]["max"], stages["one-tokenize"]["max"]
    print("Tokenization (8192-token tokenizer trained on a sample): %d streams, %d documents, %d tokens; with make -j2 "
          "%.1f s, one process (2 threads, one stream into sigma-shard) %.1f s; shard set of the streams against one "
          "process's: %s." % (stages["encode"]["n"], man["documents"], man["tokens"], t, ot,
                              open(os.path.join(out, "tok-vs-one.txt")).read().strip()))


if __name__ == "__main__":
    main()
