#!/usr/bin/env python3
"""Agreement of sigma-dedup and datatrove on which documents are removed.

    bench/dedup_agree.py N SIGMA_REMOVED.jsonl DATATROVE_REMOVED

N is the number of documents; SIGMA_REMOVED is sigma-dedup --removed output,
DATATROVE_REMOVED is bench/dedup_datatrove.py's (and its .clusters file).
Prints: documents on which the keep/remove decisions agree; the removed
counts; and how many documents are in the same cluster partition (both put
the document in a cluster with exactly the same members, or both leave it
alone), which does not depend on which member each keeps.
"""
import json
import sys
from collections import defaultdict


def main():
    n = int(sys.argv[1])
    ours = {}
    with open(sys.argv[2]) as f:
        for line in f:
            r = json.loads(line)
            if r["reason"] in ("near", "exact"):
                ours[r["index"]] = r["duplicate_of"]
    with open(sys.argv[3]) as f:
        theirs = {int(x) for x in f}
    both = len(set(ours) & theirs)
    differ = len(set(ours) ^ theirs)
    print("documents %d" % n)
    print("removed_sigma %d" % len(ours))
    print("removed_datatrove %d" % len(theirs))
    print("removed_by_both %d" % both)
    print("decision_agreement %.5f" % ((n - differ) / n))

    def root(i):
        while i in ours:
            i = ours[i]
        return i

    our_cl = defaultdict(set)
    for i in ours:
        our_cl[root(i)].add(i)
    for r in list(our_cl):
        our_cl[r].add(r)
    our_of = {d: frozenset(m) for m in our_cl.values() for d in m}
    dt_cl = defaultdict(set)
    try:
        with open(sys.argv[3] + ".clusters") as f:
            for line in f:
                d, c = map(int, line.split())
                dt_cl[c].add(d)
    except FileNotFoundError:
        return
    dt_of = {d: frozenset(m) for m in dt_cl.values() for d in m}
    same = sum(1 for d in range(n) if our_of.get(d, frozenset([d])) == dt_of.get(d, frozenset([d])))
    print("cluster_agreement %.5f" % (same / n))


if __name__ == "__main__":
    main()
