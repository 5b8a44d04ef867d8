#!/usr/bin/env python3
"""A benchmark corpus of real text for sigma-dedup: the documentation that
Debian installs (/usr/share/doc: changelogs, READMEs, copyright files, the
compressed ones uncompressed), cut into paragraphs (blank-line separated),
each a JSON Lines document {"id": N, "text": ...}, in a fixed order, until
the target size. Paragraphs with fewer than 3 words are left out (datatrove's
reader would drop empty ones and shift its document numbers).

    bench/dedup_corpus.py OUT.jsonl [MEGABYTES]   (default 200)
"""
import gzip
import json
import os
import sys


def files():
    for root, dirs, names in os.walk("/usr/share/doc"):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(root, n)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            if n.endswith(".gz") or not os.path.splitext(n)[1] or n.endswith((".txt", ".md", ".rst")):
                yield p


def text_of(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, EOFError):
        return None
    if b"\0" in data[:4096]:
        return None   # binary
    return data.decode("utf-8", errors="replace")


def main():
    out, target = sys.argv[1], int(float(sys.argv[2]) * 1e6) if len(sys.argv) > 2 else 200_000_000
    size = n = 0
    with open(out, "w", encoding="utf-8") as f:
        for p in files():
            t = text_of(p)
            if not t:
                continue
            for para in t.replace("\r\n", "\n").split("\n\n"):
                if len(para.split()) < 3:
                    continue
                line = json.dumps({"id": n, "text": para.strip("\n")}) + "\n"
                f.write(line)
                size += len(line.encode("utf-8"))
                n += 1
                if size >= target:
                    break
            if size >= target:
                break
    print("%s: %d documents, %.1f MB" % (out, n, size / 1e6))


if __name__ == "__main__":
    main()
