#!/usr/bin/env python3
"""Corpora for tests/dedup_stages.t (python3 standard library only), written
as JSON Lines shards, one document a line, in a fixed order from a seed.

  dedup_stages_data.py planted DIR SHARDS DOCS
      Generated text with planted duplicates: documents of 3 to 300 words
      drawn from a made-up vocabulary (with accents, digits and
      punctuation), then copies of some of them, exact after normalization
      (case, punctuation, numbers changed) or edited at rates from 1% to 30%
      (words deleted, inserted, swapped), shuffled in, cut into SHARDS
      files DIR/shard-K.jsonl (one of them empty).

  dedup_stages_data.py real DIR SHARDS SIGMA_DATA
      Real text: LAMBADA's passages and tinyshakespeare's speeches (grouped
      to 60 words or more) from SIGMA_DATA, with edited and exact copies of
      some, shuffled in, cut into SHARDS files.

  dedup_stages_data.py big FILE MEGABYTES
      One file of about MEGABYTES of generated documents of at most 2 kB
      (many near copies), for the test of bounded memory.
"""
import json
import os
import random
import sys

SEED = 20261201


def vocabulary(rng, n=3000):
    letters = "abcdefghijklmnopqrstuvwxyz"
    extra = ["é", "ü", "ñ", "ø", "ß"]
    words = set()
    while len(words) < n:
        w = "".join(rng.choice(letters) for _ in range(rng.randint(1, 10)))
        if rng.random() < 0.05:
            w += rng.choice(extra)
        words.add(w)
    return sorted(words)


def sentence(rng, vocab, n):
    out = []
    for i in range(n):
        w = rng.choice(vocab)
        r = rng.random()
        if r < 0.05:
            w = w.capitalize()
        elif r < 0.08:
            w = str(rng.randint(0, 99999))
        out.append(w)
        if rng.random() < 0.07:
            out[-1] += rng.choice([",", ".", ";", "!", "?"])
    return " ".join(out)


def edit(text, rate, rng, vocab):
    words, out, i = text.split(), [], 0
    while i < len(words):
        r = rng.random()
        if r < rate / 3:
            i += 1
            continue
        if r < 2 * rate / 3:
            out.append(rng.choice(vocab))
        if r > 1 - rate / 3 and i + 1 < len(words):
            out += [words[i + 1], words[i]]
            i += 2
            continue
        out.append(words[i])
        i += 1
    return " ".join(out)


def exact_variant(text, rng):
    """Equal after datatrove's normalization: case, punctuation, numbers."""
    words = []
    for w in text.split():
        if w.isdigit():
            w = str(rng.randint(0, 9))
        words.append(w.upper() if rng.random() < 0.3 else w)
    return "  ".join(words) + rng.choice(["", "!", " ..."])


def plant(docs, rng, vocab, n_exact, n_near):
    base = list(docs)
    for _ in range(n_exact):
        docs.append(exact_variant(rng.choice(base), rng))
    for _ in range(n_near):
        docs.append(edit(rng.choice(base), rng.choice([0.01, 0.02, 0.05, 0.1, 0.3]), rng, vocab))
    rng.shuffle(docs)
    return docs


def write_shards(d, docs, shards, rng):
    os.makedirs(d, exist_ok=True)
    cuts = sorted(rng.sample(range(1, len(docs)), shards - 2))
    cuts = [0] + cuts[:1] + cuts[:1] + cuts[1:] + [len(docs)]   # the second shard is empty
    for k in range(shards):
        with open(os.path.join(d, "shard-%d.jsonl" % k), "w", encoding="utf-8") as f:
            for i in range(cuts[k], cuts[k + 1]):
                f.write(json.dumps({"id": i, "text": docs[i]}, ensure_ascii=i % 2 == 0) + "\n")


def planted(d, shards, n):
    rng = random.Random(SEED)
    vocab = vocabulary(rng)
    docs = [sentence(rng, vocab, rng.randint(3, 4) if rng.random() < 0.05 else rng.randint(5, 300)) for _ in range(n)]
    write_shards(d, plant(docs, rng, vocab, n // 8, n // 5), shards, rng)


def real(d, shards, data):
    rng = random.Random(SEED)
    docs = []
    with open(os.path.join(data, "eval", "lambada_test.jsonl"), encoding="utf-8") as f:
        docs += [json.loads(line)["text"] for line in f][:2500]
    with open(os.path.join(data, "corpora", "tinyshakespeare.txt"), encoding="utf-8") as f:
        cur = []
        for s in f.read().split("\n\n"):
            cur.append(s)
            if sum(len(x.split()) for x in cur) >= 60:
                docs.append("\n\n".join(cur))
                cur = []
    docs = docs[:4500]
    vocab = sorted({w for t in docs[:200] for w in t.split()})
    write_shards(d, plant(docs, rng, vocab, 300, 600), shards, rng)


def big(path, mb):
    rng = random.Random(SEED)
    vocab = vocabulary(rng)
    base = [sentence(rng, vocab, rng.randint(20, 300)) for _ in range(4000)]
    size, i = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < mb * 1e6:
            t = edit(base[i % len(base)], 0.05, rng, vocab) if i >= len(base) else base[i]
            line = json.dumps({"text": t[:1900]}) + "\n"
            f.write(line)
            size += len(line)
            i += 1


def main():
    cmd = sys.argv[1]
    if cmd == "planted":
        planted(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "real":
        real(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif cmd == "big":
        big(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
