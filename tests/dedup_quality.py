#!/usr/bin/env python3
"""The measured quality test of sigma-dedup (python3 standard library only).

  dedup_quality.py build OUT.jsonl [SHAKESPEARE]
      A corpus of real documents: Debian's /usr/share/doc/*/copyright files
      (which repeat license texts), fortunes (/usr/share/games/fortunes) and
      tinyshakespeare passages, plus edited copies of some of them made at
      controlled rates (each word deleted, preceded by an inserted word, or
      swapped with the next, with probability `rate`), seeded, shuffled in.
      Prints what it used.

  dedup_quality.py score TRUTH REMOVED.jsonl N
      TRUTH is dedup_truth's output (pairs with exact Jaccard >= 0.7, exact
      duplicates after normalization); REMOVED is sigma-dedup --removed.
      Prints recall on pairs with J >= 0.8 (both in one cluster), precision
      (removed documents that have a near duplicate above 0.7), and how
      many documents were removed.
"""
import glob
import json
import os
import random
import sys

SEED = 20261122
MAX_COPYRIGHT = 700
MAX_FORTUNES = 1500
MAX_PASSAGES = 500
N_COPIES = 900
RATES = [0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3]


def copyright_docs():
    docs = []
    for path in sorted(glob.glob("/usr/share/doc/*/copyright")):
        try:
            if os.path.getsize(path) > 40000:
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                docs.append(f.read())
        except OSError:
            continue
    return docs[:MAX_COPYRIGHT]


def fortune_docs():
    docs = []
    for path in sorted(glob.glob("/usr/share/games/fortunes/*")):
        if path.endswith((".dat", ".u8")) or os.path.isdir(path) or os.path.islink(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            docs += [d.strip() for d in f.read().split("\n%\n") if len(d.split()) >= 5]
    rng = random.Random(SEED)
    rng.shuffle(docs)
    return docs[:MAX_FORTUNES]


def shakespeare_docs(path):
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        speeches = f.read().split("\n\n")
    docs, cur = [], []
    for s in speeches:
        cur.append(s)
        if sum(len(x.split()) for x in cur) >= 60:
            docs.append("\n\n".join(cur))
            cur = []
    return docs[:MAX_PASSAGES]


def edit(text, rate, rng, vocab):
    words = text.split()
    out = []
    i = 0
    while i < len(words):
        r = rng.random()
        if r < rate / 3:                    # delete
            i += 1
            continue
        if r < 2 * rate / 3:                # insert before
            out.append(rng.choice(vocab))
        elif r < rate and i + 1 < len(words):   # swap with the next
            out += [words[i + 1], words[i]]
            i += 2
            continue
        out.append(words[i])
        i += 1
    return " ".join(out)


def build(out_path, shakespeare):
    rng = random.Random(SEED)
    sources = {"copyright": copyright_docs(), "fortunes": fortune_docs(), "shakespeare": shakespeare_docs(shakespeare)}
    base = [d for docs in sources.values() for d in docs]
    if len(base) < 100:
        print("too few source documents:", {k: len(v) for k, v in sources.items()})
        sys.exit(3)
    vocab = sorted({w for d in base[:300] for w in d.split()})
    long_docs = [d for d in base if len(d.split()) >= 30]
    copies = []
    for k in range(N_COPIES):
        copies.append(edit(rng.choice(long_docs), RATES[k % len(RATES)], rng, vocab))
    docs = base + copies
    rng.shuffle(docs)
    with open(out_path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    print(" ".join("%s=%d" % (k, len(v)) for k, v in sources.items()), "copies=%d" % len(copies), "total=%d" % len(docs))


def score(truth_path, removed_path, n):
    n = int(n)
    pairs, exact = [], {}
    has_near = [False] * n
    with open(truth_path) as f:
        for line in f:
            p = line.split()
            if p[0] == "P":
                i, j, jac = int(p[1]), int(p[2]), float(p[3])
                pairs.append((i, j, jac))
                has_near[i] = has_near[j] = True
            else:
                exact[int(p[1])] = int(p[2])
    dup_of = {}
    with open(removed_path) as f:
        for line in f:
            r = json.loads(line)
            dup_of[r["index"]] = r["duplicate_of"]

    def cluster(i):
        seen = 0
        while i in dup_of and seen <= n:
            i = dup_of[i]
            seen += 1
        return i

    high = [(i, j) for i, j, jac in pairs if jac >= 0.8]
    found = sum(1 for i, j in high if cluster(i) == cluster(j))
    removed = list(dup_of)
    correct = sum(1 for i in removed if has_near[i] or i in exact)
    print("pairs_ge_0.8 %d" % len(high))
    print("recall %.4f" % (found / len(high) if high else 1.0))
    print("removed %d" % len(removed))
    print("precision %.4f" % (correct / len(removed) if removed else 1.0))
    print("exact_truth %d" % len(exact))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif len(sys.argv) == 5 and sys.argv[1] == "score":
        score(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        print(__doc__)
        sys.exit(2)
