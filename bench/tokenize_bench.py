#!/usr/bin/env python3
"""sigma-tokenize beside tiktoken and Hugging Face tokenizers.

    pip install tiktoken tokenizers
    bench/tokenize_corpus.sh                      # builds bench/out/tokenize/
    SIGMA_BIN=bin bench/tokenize_bench.py [--skip-train] [--reps N]

Encode: o200k (tiktoken's published ranks from $SIGMA_DATA, its pattern and
specials), bench/out/tokenize/encode.txt in documents of 64 lines (for sigma
as JSON Lines, so its time includes parsing them), on one thread and on every
core. Ids must be identical to tiktoken's (or the run fails) and are compared
with the Hugging Face tokenizer built from the same ranks (merges recovered
from the ranks, ignore_merges as in tiktoken). Times are the best of --reps
alternating runs; sigma's include loading the tokenizer file, parsing JSON
and printing ids; tiktoken's and HF's do not include building their objects.

Train: a 32k vocabulary (o200k pattern, <|endoftext|>) on train.txt with
sigma-tokenize train and with tokenizers' BpeTrainer (same regex split, byte
level); compression = held-out bytes per token, each encoded by its own tool.

Appends a dated section to bench/tokenize.md."""
import argparse
import base64
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out", "tokenize")
DATA = os.environ.get("SIGMA_DATA", os.path.join(HERE, "..", "..", "shared", "data"))
BIN = os.environ.get("SIGMA_BIN", os.path.join(HERE, "..", "bin"))
TOOL = os.path.join(BIN, "sigma-tokenize")
O200K = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""", r"""\s+"""])
RANKS = os.path.join(DATA, "tokenizers", "o200k_base.tiktoken")


def load_ranks(path):
    ranks = {}
    for line in open(path, "rb"):
        if line.strip() and not line.startswith(b"#"):
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def byte_unicode():
    """GPT-2's printable stand-ins for bytes, which byte-level HF models use."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def recover_merges(ranks):
    """A token's merge pair: BPE its bytes with lower ranks only, which
    leaves exactly two parts (merge order = rank order)."""
    merges = []
    for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(tok) == 1:
            continue
        parts = [bytes([b]) for b in tok]
        while len(parts) > 2:
            best = None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < rank and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
    return merges


def hf_from_ranks(ranks, specials):
    import pickle
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    bu = byte_unicode()
    enc = lambda b: "".join(bu[x] for x in b)
    vocab = {enc(t): r for t, r in ranks.items()}
    cache = os.path.join(OUT, "o200k.merges.pickle")   # recovering merges takes minutes in Python
    if not os.path.exists(cache):
        pickle.dump(recover_merges(ranks), open(cache, "wb"))
    merges = [(enc(a), enc(b)) for a, b in pickle.load(open(cache, "rb"))]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(O200K), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(specials))
    return tok


def best_of(reps, fn):
    best = None
    for _ in range(reps):
        t = time.perf_counter()
        r = fn()
        dt = time.perf_counter() - t
        best = dt if best is None or dt < best else best
    return best, r


def sigma_encode_ids(path, threads):
    return subprocess.run([TOOL, "-q", "encode", "--jsonl", "--ids", "--threads", str(threads), "-t", RANKS,
                           "--pattern", "o200k", path], check=True, stdout=subprocess.PIPE).stdout


def ids_text(batches):
    return ("".join(" ".join(map(str, ids)) + "\n" for ids in batches)).encode()


DOC_LINES = 64


def encode_docs():
    """encode.txt as documents of 64 lines, and the same as JSON Lines for sigma."""
    lines = open(os.path.join(OUT, "encode.txt"), "rb").read().decode("utf-8", "replace").split("\n")
    docs = ["\n".join(lines[i:i + DOC_LINES]) for i in range(0, len(lines), DOC_LINES)]
    path = os.path.join(OUT, "encode.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    return docs, path


def timed(fn, child=False):
    """Wall seconds and CPU seconds (of this process, or of its children)."""
    who = resource.RUSAGE_CHILDREN if child else resource.RUSAGE_SELF
    r0, t0 = resource.getrusage(who), time.perf_counter()
    out = fn()
    t1, r1 = time.perf_counter(), resource.getrusage(who)
    return t1 - t0, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), out


def bench_encode(reps, threads_all):
    """The runs of each tool alternate, so that load from other jobs on the
    machine falls on all of them; best of reps, wall and CPU time."""
    import tiktoken
    import tokenizers
    docs, path = encode_docs()
    mb = sum(len(d.encode()) for d in docs) / 1e6
    ranks = load_ranks(RANKS)
    enc = tiktoken.Encoding("o200k_base", pat_str=O200K, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018})
    hf = hf_from_ranks(ranks, ["<|endoftext|>", "<|endofprompt|>"])
    runs = {
        "sigma1": (lambda: sigma_encode_ids(path, 1), True),
        "sigmaN": (lambda: sigma_encode_ids(path, threads_all), True),
        "tk1": (lambda: [enc.encode_ordinary(d) for d in docs], False),
        "tkN": (lambda: enc.encode_ordinary_batch(docs, num_threads=threads_all), False),
        "hfN": (lambda: [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)], False),
        "hf1": (lambda: hf_one_thread(1), True),
    }
    best, outs = {}, {}
    for _ in range(reps):
        for name, (fn, child) in runs.items():
            wall, cpu, out = timed(fn, child)
            if name == "hf1":
                wall, cpu = out   # measured inside the child
            outs[name] = out
            b = best.get(name, (1e9, 1e9))
            best[name] = (min(b[0], wall), min(b[1], cpu))
    sig = outs["sigma1"]
    if sig != outs["sigmaN"]:
        sys.exit("sigma: the number of threads changed the ids")
    if ids_text(outs["tk1"]) != sig or outs["tkN"] != outs["tk1"]:
        sys.exit("sigma and tiktoken ids differ: no result")
    same_hf = ids_text(outs["hfN"]) == sig
    if not same_hf:
        bad = sum(1 for a, b in zip(outs["hfN"], outs["tk1"]) if a != b)
        print(f"HF differs from tiktoken on {bad} of {len(docs)} documents", file=sys.stderr)
    rows = [("sigma-tokenize encode --jsonl", best["sigma1"], best["sigmaN"], "yes"),
            ("tiktoken " + tiktoken.__version__, best["tk1"], best["tkN"], "yes"),
            ("HF tokenizers " + tokenizers.__version__, best["hf1"], best["hfN"], "yes" if same_hf else "NO")]
    return mb, len(docs), rows


def hf_one_thread(reps):
    """HF on one thread: RAYON_NUM_THREADS must be set before it starts, so
    in a child, which reports its best wall and CPU seconds."""
    code = f"""
import sys, time; sys.path.insert(0, {HERE!r})
from tokenize_bench import hf_from_ranks, load_ranks, RANKS, timed, encode_docs
hf = hf_from_ranks(load_ranks(RANKS), ["<|endoftext|>", "<|endofprompt|>"])
docs, _ = encode_docs()
r = [timed(lambda: hf.encode_batch(docs, add_special_tokens=False))[:2] for _ in range({reps})]
print(min(w for w, c in r), min(c for w, c in r))
"""
    env = dict(os.environ, RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="true")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    wall, cpu = map(float, out.split()[-2:])
    return wall, cpu


def bench_train(vocab):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    train = os.path.join(OUT, "train.txt")
    held = os.path.join(OUT, "heldout.txt")
    mine = os.path.join(OUT, "sigma32k.tok")
    t = time.perf_counter()
    subprocess.run([TOOL, "-q", "train", "--vocab-size", str(vocab), "--pattern", "o200k", "-o", mine, train], check=True)
    ts = time.perf_counter() - t
    out = subprocess.run([TOOL, "-q", "encode", "--ids", "-t", mine, held], check=True, stdout=subprocess.PIPE).stdout
    held_bytes = os.path.getsize(held)
    bpt_sigma = held_bytes / len(out.split())
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(O200K), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t = time.perf_counter()
    hf.train([train], tr)
    th = time.perf_counter() - t
    text = open(held, "rb").read().decode("utf-8", "replace")
    n_hf = len(hf.encode(text, add_special_tokens=False).ids)
    bpt_hf = len(text.encode("utf-8")) / n_hf
    return os.path.getsize(train) / 1e6, ts, th, bpt_sigma, bpt_hf, hf.get_vocab_size()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-encode", action="store_true")
    ap.add_argument("--vocab", type=int, default=32000)
    args = ap.parse_args()
    cores = os.cpu_count()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    md = [f"\n## {when}\n", f"Machine: {cpu}, {cores} cores, shared with other jobs (timings under contention).",
          f"Command: `SIGMA_BIN={BIN} bench/tokenize_bench.py --reps {args.reps}` after `bench/tokenize_corpus.sh`.\n"]
    if not args.skip_encode:
        mb, n, rows = bench_encode(args.reps, cores)
        md += [f"Encode, o200k, {mb:.1f} MB of man pages and /usr/share/doc text, {n} documents of {DOC_LINES} lines "
               "(sigma reads them as JSON Lines and writes --ids), best of "
               f"{args.reps}, runs of the three tools alternating. MB/s by wall clock, and on one thread also by "
               "CPU time, which other jobs on the machine disturb less:\n",
               f"| tool | MB/s, 1 thread | MB/s per CPU second, 1 thread | MB/s, {cores} threads | ids identical to tiktoken |",
               "| --- | ---: | ---: | ---: | --- |"]
        md += [f"| {r[0]} | {mb / r[1][0]:.1f} | {mb / r[1][1]:.1f} | {mb / r[2][0]:.1f} | {r[3]} |" for r in rows]
        sg, tk, hf = rows
        md.append(f"\nsigma / tiktoken: {tk[1][0] / sg[1][0]:.2f}x on one thread by wall clock, {tk[1][1] / sg[1][1]:.2f}x by CPU time, "
                  f"{tk[2][0] / sg[2][0]:.2f}x on {cores} threads; sigma / HF: {hf[1][0] / sg[1][0]:.2f}x, {hf[1][1] / sg[1][1]:.2f}x "
                  f"and {hf[2][0] / sg[2][0]:.2f}x.\n")
    if not args.skip_train:
        mb, ts, th, bs, bh, hv = bench_train(args.vocab)
        md += [f"Train, {args.vocab} tokens (o200k pattern), {mb:.1f} MB; held-out {os.path.getsize(os.path.join(OUT, 'heldout.txt')) / 1e6:.1f} MB:\n",
               "| tool | seconds | held-out bytes/token |", "| --- | ---: | ---: |",
               f"| sigma-tokenize train | {ts:.1f} | {bs:.3f} |",
               f"| HF tokenizers BpeTrainer (vocab {hv}) | {th:.1f} | {bh:.3f} |",
               f"\nsigma is {th / ts:.2f}x faster; compression differs by {100 * (bs - bh) / bh:+.2f}%.\n"]
    text = "\n".join(md) + "\n"
    print(text)
    res = os.path.join(HERE, "tokenize.md")
    if not os.path.exists(res):
        open(res, "w").write("# sigma-tokenize benchmarks\n\nMade by bench/tokenize_bench.py; newest last.\n")
    open(res, "a").write(text)


if __name__ == "__main__":
    main()
