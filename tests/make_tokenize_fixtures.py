#!/usr/bin/env python3
"""Reference token ids for sigma-tokenize, made with tiktoken.

    pip install tiktoken          # pulls in the `regex` module too
    SIGMA_DATA=../shared/data tests/make_tokenize_fixtures.py

tiktoken cannot download its rank files here, so each encoding is built from
$SIGMA_DATA/tokenizers/*.tiktoken with the published pattern and specials
(tiktoken_ext/openai_public.py). Writes into tests/fixtures/tokenize/:

  *.txt, invalid.bin   synthetic inputs (written by this script, committed)
  expected.txt         CASE ENCODING SOURCE_SHA256 NTOKENS IDS_SHA256, where
                       IDS_SHA256 is the sha256 of what `sigma-tokenize encode
                       --ids` prints for the whole input as one document: the
                       ids separated by spaces, then a newline (nothing for
                       empty input, which is no document). CASE is a
                       committed file, `data:PATH` (under $SIGMA_DATA; `data4:PATH`: four copies of it) or
                       `sys:PATH` (a file of this Debian system, gunzipped if
                       .gz); tests skip a source whose sha256 differs.
  codepoints.txt       ENCODING FIRST_CODE_POINT NTOKENS FNV1A64 for blocks of
                       4096 code points, see codepoint_block(); the hash is
                       FNV-1a 64 over the ids as u32 little-endian. Checks
                       that utf8proc's classes agree with tiktoken's tables.

Valid UTF-8 is encoded by tiktoken itself (encode_ordinary). tiktoken takes
str, so bytes that are not UTF-8 have no tiktoken answer; sigma's rule is that
each such byte is a character with no class. The reference for invalid.bin is
that rule spelled with tiktoken's own parts: decode with surrogateescape (each
bad byte becomes a lone surrogate, which is in no class for the `regex`
module), split with tiktoken's pattern in `regex`, BPE each piece with
tiktoken's _encode_single_piece. The script checks on every valid input that
this route gives exactly tiktoken's ids.
"""
import gzip
import hashlib
import os
import random
import struct
import sys

import regex
import tiktoken

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "tokenize")
DATA = os.environ.get("SIGMA_DATA", os.path.join(HERE, "..", "..", "shared", "data"))

PATTERNS = {
    "r50k": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "cl100k": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k": "|".join([
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""", r"""\s+"""]),
}
SPECIALS = {
    "r50k": {"<|endoftext|>": 50256},
    "cl100k": {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
               "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
    "o200k": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}


def load(name):
    path = os.path.join(DATA, "tokenizers", name + "_base.tiktoken")
    ranks = {}
    import base64
    for line in open(path, "rb"):
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return tiktoken.Encoding(name + "_base", pat_str=PATTERNS[name], mergeable_ranks=ranks,
                             special_tokens=SPECIALS[name])


def encode_bytes(enc, name, data):
    """sigma's rule for any bytes, through tiktoken's pieces (see above)."""
    text = data.decode("utf-8", "surrogateescape")
    ids = []
    for piece in regex.findall(PATTERNS[name], text):
        ids += enc._encode_single_piece(piece.encode("utf-8", "surrogateescape"))
    return ids


def reference(enc, name, data):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return encode_bytes(enc, name, data)
    ids = enc.encode_ordinary(text)
    if encode_bytes(enc, name, data) != ids:
        sys.exit(f"the regex-module route disagrees with tiktoken on valid text ({name}); fix the script")
    return ids


def ids_sha(data, ids):
    """Empty input is no document at all (an empty stream): no line."""
    return hashlib.sha256((" ".join(map(str, ids)) + "\n").encode() if data else b"").hexdigest()


def fnv1a64(ids):
    h = 0xcbf29ce484222325
    for b in struct.pack(f"<{len(ids)}I", *ids):
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


# ---- synthetic inputs ----------------------------------------------------

def words(rng, alphabet, n, lo=1, hi=9):
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def rng_chars(*ranges):
    return [chr(c) for a, b in ranges for c in range(a, b + 1)]


def scripts_text(rng):
    scripts = {
        "greek": rng_chars((0x3B1, 0x3C9), (0x391, 0x3A9)), "cyrillic": rng_chars((0x430, 0x44F), (0x410, 0x42F)),
        "arabic": rng_chars((0x627, 0x64A), (0x64B, 0x652)), "hebrew": rng_chars((0x5D0, 0x5EA)),
        "devanagari": rng_chars((0x915, 0x939), (0x93E, 0x94D)), "thai": rng_chars((0xE01, 0xE30), (0xE31, 0xE3A)),
        "cjk": rng_chars((0x4E00, 0x4FFF)), "kana": rng_chars((0x3041, 0x3096), (0x30A1, 0x30FA), (0x30FC, 0x30FC)),
        "hangul": rng_chars((0xAC00, 0xAD00)), "georgian": rng_chars((0x10D0, 0x10FA)),
        "armenian": rng_chars((0x531, 0x556), (0x561, 0x586)), "ethiopic": rng_chars((0x1200, 0x1248)),
        "tamil": rng_chars((0xB95, 0xBB9), (0xBBE, 0xBCD)), "titlecase": list("ǅǈǋǲ") + rng_chars((0x61, 0x7A)),
        "modifier": list("ʰʲʷˠˤ") + rng_chars((0x61, 0x7A), (0x41, 0x5A)),
    }
    punct = [" ", " ", " ", ", ", ". ", "、", "。", "！", "？", " « ", " » ", "؟ ", "। ", "\n", " — ", "…"]
    numbers = rng_chars((0x660, 0x669), (0x966, 0x96F), (0xFF10, 0xFF19)) + list("½²³Ⅻ⑳0123456789")
    out = []
    for name, alpha in scripts.items():
        out.append(f"[{name}] ")
        for w in words(rng, alpha, 120):
            out.append(w)
            out.append(rng.choice(punct))
            if rng.random() < 0.1:
                out.append("".join(rng.choice(numbers) for _ in range(rng.randint(1, 7))))
        out.append("\n\n")
    return "".join(out)


def emoji_text(rng):
    atoms = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "1️⃣", "#️⃣", "❤️", "☺︎", "🧑🏿‍🚀",
             "e\u0301", "a\u0300\u0316\u0350", "Z\u0351\u0352\u0353\u0354\u0355", "\u0301", "\u20dd",
             "ᄀ\u1161\u11a8", "क्षि", "मैं", "بِسْمِ", "שָׁלוֹם", "o\u0308\u0304", " \u0301x", "\ufe0f",
             "n\u0303o", "Å", "A\u030a", "ﬁ", "ǅ", "ſ", "'ſ", "'S", "'LL", "'Ve", " ", " ", "\n", "!", "..."]
    return "".join(rng.choice(atoms) + (rng.choice(["", " ", "x", "Y", "7"])) for _ in range(4000)) + "\n"


def runs_text(rng):
    parts = [" " * 1000, "x", " " * 999 + "\n", "\n" * 500, "word", "\r\n" * 200, "\t" * 64 + "tab",
             "0" * 1000, " ", "1234567890" * 30, " 12 345 6789", "\u3000" * 40 + "全角", "\u00a0" * 30 + "nbsp",
             " \u2003 \u2003em", "\x1c\x1d\x1e\x1f sep", "  \n  \n\n   x", "end   \n  ", "'s 's 'S 'll 'LL 'Re 'vE 'm 'D 't",
             "don't I'll we've they're she'd 'tis", "HELLO World camelCase MixedCASEWords", "a/b/c\n/\r\n//",
             "  !!!  ???\n\n", "3.14159 1,000,000 2024-01-01 12:30", "\v\f vt ff"]
    rng.shuffle(parts)
    tail = "".join(rng.choice([" ", "\n", "\t", "\r", "a", "1", ".", "A", "\u00a0"]) for _ in range(5000))
    return "".join(parts) + tail + "   \n\n  "


def invalid_bytes(rng):
    bad = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xed\xbf\xbf",
           b"\xf4\x90\x80\x80", b"\xf5", b"\xff", b"\xfe", b"\xc3", b"\xe4\xb8", b"\xf0\x9f\x98", b"\xc3(",
           b"\xe2\x82(", b"'\xff", b" \x80", b"\x80 ", b"1\xff2", b"a\xc3\xa9\xff\xc3"]
    good = ["hello", " world", "café", "中文", "😀", " ", "\n", "123", "'s", "Ünïcode", "  "]
    out = b""
    for _ in range(3000):
        out += rng.choice(bad) if rng.random() < 0.4 else rng.choice(good).encode()
    return out + bytes(range(256))


# ---- code point sweep ----------------------------------------------------

SWEEP = [(0, 0x40000), (0xE0000, 0xE1000)]


def codepoint_block(first):
    """The text for 4096 code points from `first` (surrogates left out): each
    code point c as "a" c "b " c "9" c ",\\n" so its class decides the split."""
    s = []
    for cp in range(first, first + 4096):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        s.append("a" + c + "b " + c + "9" + c + ",\n")
    return "".join(s)


def main():
    rng = random.Random(20261122)
    os.makedirs(OUT, exist_ok=True)
    synthetic = {"scripts.txt": scripts_text(rng).encode(), "emoji.txt": emoji_text(rng).encode(),
                 "runs.txt": runs_text(rng).encode(), "invalid.bin": invalid_bytes(rng),
                 "empty.txt": b""}
    for name, data in synthetic.items():
        open(os.path.join(OUT, name), "wb").write(data)
    sources = [(name, data) for name, data in synthetic.items()]
    shakespeare = os.path.join(DATA, "corpora", "tinyshakespeare.txt")
    sources.append(("data:corpora/tinyshakespeare.txt", open(shakespeare, "rb").read()))
    # four copies: over 4 MB, so sigma-tokenize reads the file in parts
    sources.append(("data4:corpora/tinyshakespeare.txt", open(shakespeare, "rb").read() * 4))
    for f in ["man/man1/ls.1.gz", "man/man1/grep.1.gz", "man/man1/tar.1.gz", "man/man1/bash.1.gz",
              "man/man1/find.1.gz", "man/man1/ssh.1.gz", "doc/gzip/TODO", "doc/gzip/NEWS.gz",
              "doc/zstd/TESTING.md", "doc/zstd/README.md.gz", "doc/procps/bugs.md", "doc/procps/copyright"]:
        path = "/usr/share/" + f
        if os.path.exists(path):
            data = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
            sources.append(("sys:" + path, data))
    encs = {name: load(name) for name in PATTERNS}
    with open(os.path.join(OUT, "expected.txt"), "w") as out:
        out.write("# case encoding source_sha256 ntokens ids_sha256 (made by tests/make_tokenize_fixtures.py"
                  f" with tiktoken {tiktoken.__version__})\n")
        for case, data in sources:
            for name, enc in encs.items():
                ids = reference(enc, name, data)
                out.write(f"{case} {name} {hashlib.sha256(data).hexdigest()} {len(ids)} {ids_sha(data, ids)}\n")
            print(case, len(data), "bytes", file=sys.stderr)
    with open(os.path.join(OUT, "codepoints.txt"), "w") as out:
        out.write(f"# encoding first_code_point ntokens fnv1a64 (tiktoken {tiktoken.__version__})\n")
        for lo, hi in SWEEP:
            for first in range(lo, hi, 4096):
                text = codepoint_block(first)
                for name, enc in encs.items():
                    ids = enc.encode_ordinary(text)
                    out.write(f"{name} {first:#07x} {len(ids)} {fnv1a64(ids):016x}\n")
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
