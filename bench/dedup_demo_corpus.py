#!/usr/bin/env python3
"""The corpus of `make dedup-demo`: about 2 GB of real text with duplicates,
as JSON Lines shards compressed with zstd (python3 standard library and the
zstd command).

    bench/dedup_demo_corpus.py OUTDIR [MEGABYTES] [SHARDS]    (2000, 16)

The base, in a fixed order: Debian's documentation as bench/dedup_corpus.py
cuts it (/usr/share/doc: changelogs, READMEs, copyright files, in
paragraphs) and Debian's man pages (/usr/share/man, every language, troff
requests and font escapes stripped, cut at paragraph requests), about 400
MB on a Debian 12 machine with a developer's packages. Then passes over the
base until MEGABYTES: pass 0 is the base itself, every later pass holds each
base document once more, changed at a rate drawn from 0 (an exact copy, or
one that differs only in case and spacing), 1%, 3%, 10% and 30% of its words
(each change deletes a word, inserts one of the document's words, or swaps
two), and each pass is shuffled. So the shards hold exact copies, near
copies that MinHash should find (1-3%), copies it should mostly find (10%)
and copies it should keep (30%), spread over all shards. Seeded: the same
machine makes the same corpus. Written as OUTDIR/part-NNN.jsonl.zst of
about equal size, each line {"id": N, "pass": P, "text": ...}.
"""
import gzip
import json
import os
import random
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dedup_corpus  # noqa: E402  (the documentation's paragraphs, as bench/dedup.md uses them)

SEED = 20261201
RATES = [0.0, 0.0, 0.01, 0.03, 0.1, 0.3]


def doc_paragraphs():
    for p in dedup_corpus.files():
        t = dedup_corpus.text_of(p)
        if not t:
            continue
        for para in t.replace("\r\n", "\n").split("\n\n"):
            if len(para.split()) >= 3:
                yield para.strip("\n")


ESCAPES = re.compile(r"\\f[BIRPC0-9]|\\f\(..|\\s[-+]?[0-9]|\\\*\(..|\\\*.|\\\(..|\\[&|^%]")


def man_paragraphs():
    paths = []
    for root, dirs, names in os.walk("/usr/share/man"):
        dirs.sort()
        paths += [os.path.join(root, n) for n in sorted(names) if n.endswith(".gz")]
    for p in paths:
        try:
            with gzip.open(p, "rt", encoding="utf-8", errors="replace") as f:
                src = f.read()
        except (OSError, EOFError):
            continue
        cur = []
        for line in src.split("\n"):
            if line.startswith((".PP", ".SH", ".SS", ".TP", ".LP", ".P ", ".IP", ".sp")) or line == ".P":
                if len(" ".join(cur).split()) >= 3:
                    yield " ".join(cur)
                cur = []
                if line.startswith((".SH", ".SS")):
                    cur.append(line[3:].strip().strip('"'))
            elif line.startswith((".", "'")):
                words = line.split(None, 1)
                if len(words) == 2 and words[0] in (".B", ".I", ".BR", ".IR", ".RB", ".RI", ".BI", ".IB"):
                    cur.append(words[1].replace('"', ""))
            else:
                cur.append(ESCAPES.sub("", line).replace("\\-", "-").replace("\\e", "\\"))
        if len(" ".join(cur).split()) >= 3:
            yield " ".join(cur)


def change(text, rate, rng):
    words = text.split()
    if rate == 0:
        return text.upper() if rng.random() < 0.5 else "  ".join(words)
    for _ in range(max(1, int(rate * len(words)))):
        i = rng.randrange(len(words))
        r = rng.random()
        if r < 1 / 3 and len(words) > 1:
            del words[i]
        elif r < 2 / 3:
            words.insert(i, rng.choice(words))
        elif i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


class Shards:
    def __init__(self, out, n, total):
        self.out, self.n, self.per, self.k, self.size, self.p = out, n, total / n, -1, 0, None
        os.makedirs(out, exist_ok=True)

    def write(self, line):
        if self.p is None or (self.size >= self.per and self.k + 1 < self.n):
            self.close()
            self.k += 1
            path = os.path.join(self.out, "part-%03d.jsonl.zst" % self.k)
            self.p = subprocess.Popen(["zstd", "-q", "-3", "-f", "-o", path + ".tmp"], stdin=subprocess.PIPE)
            self.path, self.size = path, 0
        data = line.encode("utf-8")
        self.p.stdin.write(data)
        self.size += len(data)

    def close(self):
        if self.p:
            self.p.stdin.close()
            if self.p.wait() != 0:
                sys.exit("zstd failed")
            os.rename(self.path + ".tmp", self.path)


def main():
    out = sys.argv[1]
    target = float(sys.argv[2]) * 1e6 if len(sys.argv) > 2 else 2e9
    n_shards = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    base = list(doc_paragraphs()) + list(man_paragraphs())
    rng = random.Random(SEED)
    base_bytes = sum(len(t.encode("utf-8")) for t in base)
    shards = Shards(out, n_shards, target)
    written = n = p = 0
    while written < target:
        order = list(range(len(base)))
        if p > 0:
            rng.shuffle(order)
        for i in order:
            text = base[i] if p == 0 else change(base[i], rng.choice(RATES), rng)
            line = json.dumps({"id": n, "pass": p, "text": text}, ensure_ascii=False) + "\n"
            shards.write(line)
            written += len(line.encode("utf-8"))
            n += 1
            if written >= target:
                break
        p += 1
    shards.close()
    print("%s: %d documents, %.1f MB of JSON Lines in %d shards; base %d documents, %.1f MB of text, %d passes"
          % (out, n, written / 1e6, shards.k + 1, len(base), base_bytes / 1e6, p))


if __name__ == "__main__":
    main()
