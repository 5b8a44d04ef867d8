#!/usr/bin/env python3
"""The independent reference for sigma-eval: log-likelihoods computed with
Hugging Face transformers (Qwen3MoeForCausalLM), following lm-evaluation-
harness's rules, on a small model that the sigma tools train and export.

Run by hand from the repository root (CI needs no Python; it reads what this
writes):
    pip install torch transformers safetensors
    SIGMA_BIN=$PWD/bin python3 tests/make_eval_fixtures.py [--reuse-model]

It builds the tools (make -j2 all and build/tests/model_logits), then:
  1. trains a sigma tokenizer (vocabulary 1024, o200k pattern) and a small
     MoE model (150 steps on the CPU, 2 threads, seed 1) on English text that
     Debian ships: /usr/share/common-licenses and the fortunes package
     (apt-get install fortunes), and keeps tests/fixtures/eval/tok.txt and
     model/{config.json,model.safetensors} (no optimizer state, no
     trainer.json). --reuse-model skips this and uses the committed model.
  2. exports the model with sigma-export --dtype fp32 and loads it with
     AutoModelForCausalLM and AutoTokenizer (the export's tokenizer.json).
  3. writes 50 items of each task in its benchmark's released file format,
     synthesised from the fortunes (a true continuation against ones taken
     from other texts): generic.jsonl, piqa.jsonl + piqa-labels.lst,
     lambada.jsonl, hellaswag.jsonl, arc.jsonl, winogrande.jsonl.
  4. scores every request with transformers alone and writes expected/:
     <task>.jsonl (per item: ll, is_greedy, pred, pred_norm, label, truncated),
     summary.json, and loss.json (the loss of loss.txt as one document, with
     a 128-token window at strides 128 and 32).
  5. checks that the exported model's logits equal sigma's own CPU forward
     (build/tests/model_logits) on every input it scored, and that the
     exported tokenizer encodes every request's text as sigma-tokenize does.
The items depend only on the fortunes files and a fixed seed; the model on the
tools and the Debian text too (a different fortunes version trains a
different model). See tests/fixtures/eval/README.md for the rules.
"""
import glob, json, math, os, random, re, shutil, subprocess, sys, tempfile

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "fixtures", "eval")
BIN = os.environ.get("SIGMA_BIN", os.path.join(ROOT, "bin"))
TESTBIN = os.environ.get("SIGMA_TESTBIN", os.path.join(ROOT, "build", "tests"))
FORTUNES = "/usr/share/games/fortunes"
W = 128                 # the model's max_seq_len: lm-evaluation-harness's max_length
N_ITEMS = 50
SEED = 20251201

MODEL_CFG = {"vocab_size": 1024, "d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16,
             "n_experts": 8, "d_expert": 32, "top_k": 2, "max_seq_len": W, "tie_embeddings": True}
TRAIN_ARGS = ["--seq-len", "128", "--micro-batch", "8", "--batch-tokens", "4096", "--steps", "150",
              "--lr", "1.5e-2", "--seed", "1", "--eval-every", "0", "--threads", "2", "--device", "cpu"]


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def die(msg):
    say("make_eval_fixtures: " + msg)
    sys.exit(1)


def tool(name, *args, **kw):
    return subprocess.run([os.path.join(BIN, name)] + list(args), check=True, capture_output=True, **kw).stdout


# ---------------------------------------------------------------- the model

def debian_texts():
    if not os.path.isdir(FORTUNES):
        die(f"{FORTUNES} is missing: apt-get install fortunes")
    files = glob.glob("/usr/share/common-licenses/*") + glob.glob(FORTUNES + "/*")
    return sorted(f for f in files if os.path.isfile(f) and not os.path.islink(f) and not f.endswith((".dat", ".u8")))


def build_model(tmp):
    texts = debian_texts()
    tok = os.path.join(OUT, "tok.txt")
    tool("sigma-tokenize", "train", "-q", "--vocab-size", "1024", "--pattern", "o200k", "-o", tok, *texts)
    stream = tool("sigma-tokenize", "encode", "-q", "-t", tok, *texts)
    shards = os.path.join(tmp, "shards")
    subprocess.run([os.path.join(BIN, "sigma-shard"), "-q", "-o", shards, "--val-fraction", "0"],
                   input=stream, check=True)
    cfg = os.path.join(tmp, "cfg.json")
    json.dump(MODEL_CFG, open(cfg, "w"))
    run = os.path.join(tmp, "run")
    args = ["--config", cfg, "--data", shards, "--out", run, "--metrics", os.path.join(tmp, "metrics.jsonl")] + TRAIN_ARGS
    say("training: sigma-pretrain " + " ".join(args))
    tool("sigma-pretrain", "-q", *args)
    steps = [json.loads(l) for l in open(os.path.join(tmp, "metrics.jsonl")) if l.strip()]
    last = steps[-1]
    say(f"trained: last step {json.dumps(last)}")
    step_dir = os.path.join(run, open(os.path.join(run, "latest")).read().strip())
    mdir = os.path.join(OUT, "model")
    shutil.rmtree(mdir, ignore_errors=True)
    os.makedirs(mdir)
    for f in ("config.json", "model.safetensors"):       # no optimizer state, no trainer.json
        shutil.copy(os.path.join(step_dir, f), os.path.join(mdir, f))
    return last


# ---------------------------------------------------------------- text to draw items from

ATTRIBUTION = re.compile(r"^\s*--\s")
SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def fortune_entries(path):
    raw = open(path, encoding="utf-8").read()
    for e in raw.split("\n%\n"):
        e = e.strip("\n%")
        if not e.strip():
            continue
        yield e


def prose(e):
    """An entry as one line of prose, or None when it is not prose (art,
    dialogue, headings, non-ASCII mojibake). Returns (single-spaced, with the
    fortune's own double spaces kept)."""
    lines = [l for l in e.split("\n") if not ATTRIBUTION.match(l)]
    if not lines or any(re.match(r"\s*(Q|A|[A-Z][a-z]+)\s*:\s", l) for l in lines):
        return None
    if any(not ch.isascii() for ch in e) or "_" in e or "[" in e or "]" in e:
        return None
    body = "\n".join(lines)
    if re.search(r"[^\w\s]{4,}", body.replace("...", "")) or re.search(r"\w:\s*$", lines[0]):
        return None
    two = re.sub(r"[ \t]*\n[ \t]*", " ", body.strip()).replace("\t", " ")
    two = re.sub(r" {3,}", "  ", two)
    one = re.sub(r"\s+", " ", two)
    letters = sum(c.isalpha() or c == " " for c in one)
    if letters < 0.88 * len(one) or not one[0].isupper():
        return None
    return one, two


def load_pool():
    skip = {"art", "ascii-art", "translate-me", "definitions", "riddles"}
    pool = []
    for f in debian_texts():
        if not f.startswith(FORTUNES) or os.path.basename(f) in skip:
            continue
        for e in fortune_entries(f):
            p = prose(e)
            if p and 60 <= len(p[0]) <= 900:
                pool.append({"file": os.path.basename(f), "one": p[0], "two": p[1]})
    return pool


def definitions():
    """(term, part of speech, definition) from the fortunes' definitions file."""
    out = []
    for e in fortune_entries(os.path.join(FORTUNES, "definitions")):
        lines = [l for l in e.split("\n") if not ATTRIBUTION.match(l)]
        m = re.match(r"^([A-Z][\w' -]+), (n|v|adj|adv|vt|vi|prep|pron|interj|conj)\.+:\s*$", lines[0])
        if not m or any(not ch.isascii() for ch in e):
            continue
        body = re.sub(r"\s+", " ", " ".join(lines[1:])).strip()
        first = SENT_END.split(body)[0]
        if 15 <= len(first) <= 220 and "[" not in first:
            out.append((m.group(1), m.group(2), first))
    return out


def qa_pairs():
    """(question, answer) pairs from the fortunes' Q:/A: jokes."""
    out = []
    for f in ("riddles", "cookie", "law", "linux", "science", "work", "fortunes", "computers", "humorists"):
        path = os.path.join(FORTUNES, f)
        if not os.path.exists(path):
            continue
        for e in fortune_entries(path):
            if any(not ch.isascii() for ch in e):
                continue
            parts, cur = {}, None
            for l in e.split("\n"):
                m = re.match(r"^(Q|A):\s*(.*)$", l)
                if m:
                    cur = m.group(1)
                    if cur in parts:
                        cur = "dup"
                    parts[cur] = m.group(2)
                elif cur in ("Q", "A") and l.startswith(("\t", " ")) and not ATTRIBUTION.match(l):
                    parts[cur] += " " + l.strip()
                else:
                    cur = None
            if "dup" in parts or "Q" not in parts or "A" not in parts:
                continue
            q, a = (re.sub(r"\s+", " ", parts[k]).strip() for k in ("Q", "A"))
            q, a = (x[1:-1].strip() if len(x) > 2 and x[0] == x[-1] == '"' and x.count('"') == 2 else x for x in (q, a))
            if 10 <= len(q) <= 200 and 2 <= len(a) <= 120 and q not in [x[0] for x in out]:
                out.append((q, a))
    return out


def fancy(t):
    """The same text with typographic (non-ASCII) punctuation and accents."""
    t = t.replace(" -- ", " — ").replace("--", "—").replace("...", "…")
    t = re.sub(r'"([^"]*)"', "“\\1”", t)
    t = re.sub(r"(?<=\w)'(?=\w)", "’", t)
    for a, b in (("cafe", "café"), ("naive", "naïve"), ("resume", "résumé"), ("cooperat", "coöperat"),
                 ("Zurich", "Zürich"), ("fiance", "fiancé"), ("facade", "façade")):
        t = t.replace(a, b)
    return t


def has_non_ascii(s):
    return any(not c.isascii() for c in s)


class Drawer:
    """Draws pool entries without repeats, per task, deterministically."""
    def __init__(self, pool, rng, pred=None):
        self.items = [p for p in pool if pred is None or pred(p)]
        rng.shuffle(self.items)
        self.i = 0

    def __call__(self):
        self.i += 1
        return self.items[self.i - 1]


def span(rng, text, nwords):
    """nwords consecutive words of text from a random word, as a string."""
    w = text.split(" ")
    nwords = max(1, min(nwords, len(w)))
    s = rng.randint(0, len(w) - nwords)
    return " ".join(w[s:s + nwords])


def first_words(text, lo, hi):
    """Cut text after a sentence end between lo and hi words, else at hi."""
    w = text.split(" ")
    for k in range(lo, min(hi, len(w)) + 1):
        if re.search(r"[.!?]\"?$", w[k - 1]):
            return " ".join(w[:k])
    return " ".join(w[:hi])


def distinct(choices):
    return len(set(choices)) == len(choices) and all(c.strip() for c in choices)


# ---------------------------------------------------------------- the tasks, in their released formats

def make_generic(pool, rng):
    draw = Drawer(pool, rng, lambda p: len(p["one"].split(" ")) >= 14 and len(p["one"]) <= 420)
    other = Drawer(pool, rng)
    items = []
    while len(items) < N_ITEMS:
        i = len(items)
        if i == 7:          # an empty context: a sentence against its words reversed
            s = first_words(draw()["one"], 6, 12)
            choices = [s, " ".join(reversed(s.split(" ")))]
            if rng.random() < 0.5:
                choices.reverse()
            items.append({"context": "", "choices": choices, "label": choices.index(s)})
            continue
        e = draw()
        text = fancy(e["one"]) if i % 5 == 2 else e["one"]
        w = text.split(" ")
        k = rng.randint(int(len(w) * 0.4), int(len(w) * 0.7))
        context, true = " ".join(w[:k]), first_words(" ".join(w[k:]), 4, 22)
        if i % 10 == 3:     # longer than the window: other fortunes of the same file first
            same = [p["one"] for p in pool if p["file"] == e["file"] and p["one"] != e["one"]]
            pre = " ".join(rng.sample(same, min(len(same), rng.randint(4, 7))))
            context = pre + " " + context
        if i % 8 == 5:      # a context ending in a space
            context += " "
        n = rng.choice([2, 3, 4, 4, 4, 5])
        nw = len(true.split(" "))
        choices = [true] + [span(rng, other()["one"], max(2, nw + rng.randint(-3, 3))) for _ in range(n - 1)]
        if i % 5 == 2:
            choices = [choices[0]] + [fancy(c) for c in choices[1:]]
        if not distinct(choices):
            continue
        rng.shuffle(choices)
        items.append({"context": context, "choices": choices, "label": choices.index(true)})
    return items


PIQA_GOALS = [
    'What is meant by "{t}"?',
    "How would a cynic define the word {t}?",
    "Explain what {a} {tl} is.",
    "To describe {a} {tl} in one sentence,",
    "Give the meaning of the {p} {t}.",
    "How can you tell someone what {a} {tl} is?",
    'Define "{t}" ({p}).',
]
POS = {"n": "noun", "v": "verb", "vt": "verb", "vi": "verb", "adj": "adjective", "adv": "adverb",
       "prep": "preposition", "pron": "pronoun", "interj": "interjection", "conj": "conjunction"}


def make_piqa(rng):
    defs = definitions()
    rng.shuffle(defs)
    items, labels = [], []
    for i in range(N_ITEMS):
        t, p, d = defs[i]
        wrong = defs[N_ITEMS + i][2]
        art = "an" if t[0].lower() in "aeiou" else "a"
        goal = rng.choice(PIQA_GOALS).format(t=t, tl=t.lower(), a=art, p=POS[p])
        if i % 6 == 1:
            goal, d, wrong = fancy(goal), fancy(d), fancy(wrong)
        if i % 9 == 4:
            goal = goal + "  "     # a goal ending in spaces; the prompt adds "\nAnswer:" after it
        label = rng.randint(0, 1)
        sol = [wrong, d] if label else [d, wrong]
        items.append({"goal": goal, "sol1": sol[0], "sol2": sol[1]})
        labels.append(label)
    return items, labels


COMMON = {"the", "and", "that", "you", "for", "are", "was", "not", "have", "with", "this", "they", "his", "but",
          "one", "all", "can", "will", "what", "there", "from", "when", "your", "more", "time", "people", "life"}


def make_lambada(pool, rng):
    draw = Drawer(pool, rng, lambda p: len(p["one"].split(" ")) >= 18 and len(p["one"]) <= 420)
    items = []
    while len(items) < N_ITEMS:
        i = len(items)
        e = draw()
        text = fancy(e["one"]) if i % 6 == 3 else e["one"]
        w = text.split(" ")
        ks = sorted(range(int(len(w) * 0.6), len(w) + 1), key=lambda _: rng.random())
        if i % 3 == 0:      # some common words as targets, which even a small model may predict
            ks.sort(key=lambda k: re.sub(r"\W+$", "", w[k - 1]).lower() not in COMMON)
        for k in ks:
            last = re.sub(r"[^\w’']+$", "", w[k - 1])
            if re.fullmatch(r"[A-Za-z][a-z’']*[a-z]", last) and len(last) >= 3:
                break
        else:
            continue
        passage = " ".join(w[:k - 1] + [last])
        if i % 6 == 5:      # longer than the window
            same = [p["one"] for p in pool if p["file"] == e["file"] and p["one"] != e["one"]]
            passage = " ".join(rng.sample(same, min(len(same), rng.randint(5, 8)))) + " " + passage
        items.append({"text": passage})
    return items


ACTIVITY = {"computers": "Computers and Electronics", "food": "Food and Entertaining", "pets": "Pets and Animals",
            "education": "Education and Communications", "medicine": "Health", "work": "Work World",
            "love": "Relationships", "men-women": "Relationships", "science": "Science",
            "sports": "Sports and Fitness", "linux": "Computers and Electronics", "tao": "Philosophy and Religion",
            "wisdom": "Philosophy and Religion", "politics": "Politics", "law": "Law", "people": "People",
            "kids": "Family Life", "magic": "Hobbies and Crafts", "literature": "Reading and writing"}
HOWTO = ["get through a Monday", "keep your opinions to yourself", "survive a meeting", "give advice",
         "think before you speak", "deal with a difficult computer", "live with a cat", "be patient",
         "find a good teacher", "take criticism", "stop worrying", "make a decision"]


def make_hellaswag(pool, rng):
    draw = Drawer(pool, rng, lambda p: len(SENT_END.split(p["two"])) >= 3 and len(p["one"].split(" ")) >= 20
                  and len(p["one"]) <= 300)
    other = Drawer(pool, rng)
    items = []
    while len(items) < N_ITEMS:
        i = len(items)
        e = draw()
        text = e["two"] if i % 3 != 1 else e["one"]           # the fortunes' own double spaces, mostly
        if i % 7 == 2:
            text = fancy(text)
        parts = re.split("(" + SENT_END.pattern + ")", text)    # sentences and the spaces between them
        sents, seps = parts[0::2], parts[1::2]
        cut = rng.randint(1, len(sents) - 1)
        nxt = sents[cut].split(" ")
        if len(nxt) < 5:
            continue
        nb = rng.randint(1, min(4, len(nxt) - 3))
        wikihow = i % 3 == 0
        ctx_a = "".join(s + sep for s, sep in zip(sents[:cut - 1], seps)) + sents[cut - 1]
        ctx_b = " ".join(nxt[:nb])
        ctx_b = ctx_b[0].lower() + ctx_b[1:]
        true = first_words(" ".join(nxt[nb:]), 4, 30)
        if cut + 1 < len(sents) and len(true.split(" ")) < 10 and true == " ".join(nxt[nb:]):
            true += (" [substeps] " if wikihow else seps[cut]) + sents[cut + 1]
        if wikihow:
            how = rng.choice(HOWTO)
            ctx_a = f"[header] How to {how} [title] " + ctx_a.replace(". ", ". [step] ", 1)
            if i % 2 == 0:   # WikiHow items often have an empty ctx_b: the whole next step is the ending
                true, ctx_b = ctx_b[0].upper() + ctx_b[1:] + " " + true, ""
        if i % 8 == 4:      # longer than the window
            same = [p["two"] for p in pool if p["file"] == e["file"] and p["one"] != e["one"]]
            ctx_a = " ".join(rng.sample(same, min(len(same), rng.randint(4, 6)))) + " " + ctx_a
        nw = len(true.split(" "))
        endings = [true]
        for _ in range(3):
            s = span(rng, other()["two"], max(4, nw + rng.randint(-4, 4)))
            if wikihow and rng.random() < 0.4:
                s = s + " [title] " + first_words(other()["one"], 3, 12)
            endings.append(s)
        if not distinct(endings):
            continue
        rng.shuffle(endings)
        act = ACTIVITY.get(e["file"], e["file"].replace("-", " ").capitalize())
        item = {"ind": 1000 + 37 * i + rng.randint(0, 30), "activity_label": act, "ctx_a": ctx_a, "ctx_b": ctx_b,
                "ctx": ctx_a + (" " + ctx_b if ctx_b else ""), "endings": endings, "label": endings.index(true),
                "source_id": (f"wikihow~{rng.randint(1000, 99999)}" if wikihow
                              else "activitynet~v_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") for _ in range(11))),
                "split": "val", "split_type": "indomain" if i % 2 == 0 else "zeroshot"}
        items.append(item)
    return items


def make_arc(rng):
    qa = qa_pairs()
    defs = definitions()
    rng.shuffle(qa)
    rng.shuffle(defs)
    stems = [(q, a) for q, a in qa]
    # not enough jokes? questions about the definitions too
    for t, p, d in defs:
        if len(stems) >= N_ITEMS:
            break
        stems.append((f"Which of these best describes {('an' if t[0].lower() in 'aeiou' else 'a')} {t.lower()}?", d))
    answers = sorted(set(a for _, a in stems))
    items = []
    for i in range(N_ITEMS):
        q, a = stems[i]
        n = 4 if i % 12 not in (5, 11) else (3 if i % 12 == 5 else 5)
        wrong = rng.sample([x for x in answers if x != a], n - 1)
        texts = [a] + wrong
        rng.shuffle(texts)
        if i % 7 == 3:
            q, texts = fancy(q), [fancy(t) for t in texts]
            a = fancy(a)
        labels = [str(j + 1) for j in range(n)] if i % 6 == 4 else ["ABCDE"[j] for j in range(n)]
        items.append({"id": f"SigmaFixture_{i + 1:04d}",
                      "question": {"stem": q, "choices": [{"text": t, "label": l} for t, l in zip(texts, labels)]},
                      "answerKey": labels[texts.index(a)]})
    return items


def make_winogrande(pool, rng):
    det = r"(?:the|a|an|his|her|my|your|their|our|its)"
    cands = []
    for p in pool:
        for s in SENT_END.split(p["one"]):
            if not 8 <= len(s.split(" ")) <= 40:
                continue
            for m in re.finditer(rf"\b{det} ([a-z]{{3,}})\b", s):
                if len(re.findall(rf"\b{m.group(1)}\b", s)) == 1 and s[m.end(1):].strip(" .!?\""):
                    cands.append((s, m.start(1), m.group(1)))
                    break
    rng.shuffle(cands)
    nouns = [c[2] for c in cands]
    items = []
    for i in range(N_ITEMS):
        s, at, word = cands[i]
        if i % 8 == 6 and len(re.findall(rf"\b{word}\b", fancy(s))) == 1:
            s = fancy(s)
            at = re.search(rf"\b{word}\b", s).start()
        wrong = rng.choice([x for x in nouns if x != word])
        sentence = s[:at] + "_" + s[at + len(word):]
        ans = rng.choice(["1", "2"])
        opts = [word, wrong] if ans == "1" else [wrong, word]
        qid = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(30)) + f"-{rng.randint(1, 2)}"
        items.append({"qID": qid, "sentence": sentence, "option1": opts[0], "option2": opts[1], "answer": ans})
    return items


# ---------------------------------------------------------------- scoring, as lm-evaluation-harness does

class Scorer:
    def __init__(self, model, tok, eot):
        self.model, self.tok, self.eot = model, tok, eot
        self.inputs = {}            # every distinct model input, for the check against sigma
        self.texts = set()          # every text encoded, for the check against sigma-tokenize

    def encode(self, s):
        if s:
            self.texts.add(s)
        return self.tok.encode(s, add_special_tokens=False)

    def logits(self, inp):
        key = tuple(inp)
        if key not in self.inputs:
            with torch.no_grad():
                self.inputs[key] = self.model(torch.tensor([inp])).logits[0].float().numpy()
        return self.inputs[key]

    def request(self, context, continuation):
        """(ll, is_greedy, truncated) of one (context, continuation)."""
        if context == "":
            ctx, cont = [self.eot], self.encode(continuation)
        else:
            n = len(context) - len(context.rstrip())
            if n:
                continuation = context[-n:] + continuation
                context = context[:-n]
            whole = self.encode(context + continuation)
            ctx = self.encode(context)
            cont = whole[len(ctx):]
        assert 0 < len(cont) <= W, (context, continuation)
        full = ctx + cont
        inp = full[-(W + 1):][:-1]
        lg = self.logits(inp)
        lp = torch.log_softmax(torch.from_numpy(lg).double(), -1).numpy()
        L, m = len(inp), len(cont)
        ll = float(sum(lp[L - m + j, t] for j, t in enumerate(cont)))
        greedy = all(int(lg[L - m + j].argmax()) == t for j, t in enumerate(cont))
        return ll, greedy, len(full) > W + 1


def hs_preprocess(t):
    t = t.strip()
    t = t.replace(" [title]", ". ")
    t = re.sub("\\[.*?\\]", "", t)
    return t.replace("  ", " ")


def docs(task, items, labels=None):
    """(requests [(context, continuation)], choices for acc_norm or None, gold) per item."""
    for k, d in enumerate(items):
        if task == "generic":
            yield [(d["context"], " " + c) for c in d["choices"]], d["choices"], d["label"]
        elif task == "piqa":
            q = "Question: " + d["goal"] + "\nAnswer:"
            ch = [d["sol1"], d["sol2"]]
            yield [(q, " " + c) for c in ch], ch, labels[k]
        elif task == "lambada":
            ctx, last = d["text"].rsplit(" ", 1)
            yield [(ctx, " " + last)], None, 0
        elif task == "hellaswag":
            q = hs_preprocess(d["activity_label"] + ": " + d["ctx_a"] + " " + d["ctx_b"].capitalize())
            ch = [hs_preprocess(e) for e in d["endings"]]
            yield [(q, " " + c) for c in ch], ch, int(d["label"])
        elif task == "arc":
            q = "Question: " + d["question"]["stem"] + "\nAnswer:"
            ch = [c["text"] for c in d["question"]["choices"]]
            gold = [c["label"] for c in d["question"]["choices"]].index(d["answerKey"])
            yield [(q, " " + c) for c in ch], ch, gold
        elif task == "winogrande":
            s = d["sentence"]
            i = s.index("_")
            cont = " " + s[i + 1:].strip()
            yield [(s[:i] + o, cont) for o in (d["option1"], d["option2"])], None, int(d["answer"]) - 1


def mean_stderr(xs):
    xs = np.asarray(xs, dtype=np.float64)
    return float(xs.mean()), float(math.sqrt(xs.var(ddof=1) / len(xs)))


def score(sc, task, items, labels=None):
    rows, acc, accn, lls = [], [], [], []
    for k, (reqs, ch, gold) in enumerate(docs(task, items, labels)):
        r = [sc.request(c, x) for c, x in reqs]
        ll = [x[0] for x in r]
        greedy = [x[1] for x in r]
        pred = int(np.argmax(ll))
        pn = int(np.argmax([l / len(c) for l, c in zip(ll, ch)])) if ch is not None else None
        rows.append({"index": k, "ll": ll, "is_greedy": greedy, "pred": pred, "pred_norm": pn, "label": gold,
                     "truncated": any(x[2] for x in r)})
        acc.append(float(greedy[0]) if task == "lambada" else float(pred == gold))
        if pn is not None:
            accn.append(float(pn == gold))
        lls.append(ll[0])
    s = {"n": len(rows)}
    s["acc"], s["acc_stderr"] = mean_stderr(acc)
    if accn:
        s["acc_norm"], s["acc_norm_stderr"] = mean_stderr(accn)
    if task == "lambada":
        s["perplexity"] = math.exp(-float(np.mean(lls)))
    s["truncated"] = sum(r["truncated"] for r in rows)
    return rows, s


def loss_reference(sc, text):
    s = [sc.eot] + sc.encode(text)
    out = []
    for S in (W, 32):
        nll, n, a = 0.0, 0, 0
        while a < len(s) - 1:
            b = min(a + S, len(s) - 1)
            lo = max(0, b - W)
            lp = torch.log_softmax(torch.from_numpy(sc.logits(s[lo:b])).double(), -1).numpy()
            for p in range(a + 1, b + 1):
                nll -= lp[p - 1 - lo, s[p]]
                n += 1
            a = b
        nbytes = len(text.encode("utf-8"))
        out.append({"stride": S, "window": W, "tokens": n, "nll_sum": float(nll), "loss": float(nll / n),
                    "perplexity": math.exp(nll / n), "bytes": nbytes, "bits_per_byte": float(nll / math.log(2) / nbytes)})
    return out


# ---------------------------------------------------------------- checks against sigma

def check_logits(sc, mdir):
    """sigma's CPU forward (build/tests/model_logits) on every input scored."""
    worst_rel, worst_abs = 0.0, 0.0
    for inp, hl in sc.inputs.items():
        raw = subprocess.run([os.path.join(TESTBIN, "model_logits"), mdir] + [str(t) for t in inp],
                             check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1")).stdout
        sl = np.frombuffer(raw, dtype=np.float32).reshape(len(inp), -1)
        d = float(np.abs(sl - hl).max())
        worst_abs = max(worst_abs, d)
        worst_rel = max(worst_rel, d / float(np.abs(hl).max()))
    return len(sc.inputs), worst_abs, worst_rel


def check_tokenizer(sc, tok, tmp):
    texts = sorted(sc.texts)
    path = os.path.join(tmp, "texts.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    lines = tool("sigma-tokenize", "encode", "-q", "-t", tok, "--jsonl", "--ids", path).decode().split("\n")
    bad = [t for t, l in zip(texts, lines) if [int(x) for x in l.split()] != sc.tok.encode(t, add_special_tokens=False)]
    return len(texts), bad


# ---------------------------------------------------------------- main

def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    reuse = "--reuse-model" in sys.argv[1:]
    torch.manual_seed(0)
    torch.set_num_threads(2)
    subprocess.run(["make", "-s", "-j2", "all", "build/tests/model_logits"], cwd=ROOT, check=True)
    os.makedirs(os.path.join(OUT, "expected"), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="sigma-evalfix.")
    try:
        trained = None if reuse else build_model(tmp)
        mdir, tokf = os.path.join(OUT, "model"), os.path.join(OUT, "tok.txt")
        hf = os.path.join(tmp, "hf")
        tool("sigma-export", mdir, "-q", "-t", tokf, "-o", hf, "--dtype", "fp32")
        tok = AutoTokenizer.from_pretrained(hf)
        model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
        assert type(model).__name__ == "Qwen3MoeForCausalLM" and model.config.max_position_embeddings == W
        eot = tok.convert_tokens_to_ids("<|endoftext|>")
        assert tok.bos_token_id in (None, eot)     # lm-eval's prefix token: bos if any, else eos; the same here

        rng = random.Random(SEED)
        pool = load_pool()
        tasks = {}
        tasks["generic"] = (make_generic(pool, rng), None)
        piqa, piqa_labels = make_piqa(rng)
        tasks["piqa"] = (piqa, piqa_labels)
        tasks["lambada"] = (make_lambada(pool, rng), None)
        tasks["hellaswag"] = (make_hellaswag(pool, rng), None)
        tasks["arc"] = (make_arc(rng), None)
        tasks["winogrande"] = (make_winogrande(pool, rng), None)
        for name, (items, labels) in tasks.items():
            write_jsonl(os.path.join(OUT, name + ".jsonl"), items)
        with open(os.path.join(OUT, "piqa-labels.lst"), "w") as f:
            f.write("".join(f"{l}\n" for l in piqa_labels))

        sc = Scorer(model, tok, eot)
        summary = {}
        for name, (items, labels) in tasks.items():
            rows, s = score(sc, name, items, labels)
            write_jsonl(os.path.join(OUT, "expected", name + ".jsonl"), rows)
            summary[name] = s
            say(f"{name}: " + json.dumps(s))
        json.dump(summary, open(os.path.join(OUT, "expected", "summary.json"), "w"), indent=1)
        loss = loss_reference(sc, open(os.path.join(OUT, "loss.txt"), encoding="utf-8").read())
        json.dump(loss, open(os.path.join(OUT, "expected", "loss.json"), "w"), indent=1)
        for x in loss:
            say("loss: " + json.dumps(x))

        ntext, bad = check_tokenizer(sc, tokf, tmp)
        say(f"tokenizer: {ntext} texts, {len(bad)} encoded differently by sigma-tokenize")
        n, dabs, drel = check_logits(sc, mdir)
        say(f"logits: {n} inputs, max |sigma - transformers| {dabs:.3g}, relative to max |logit| {drel:.3g}")
        if bad or drel > 1e-4:
            die("the exported model or tokenizer disagrees with sigma: the fixture is not trustworthy")
        if trained:
            say(f"trained model: final step {trained}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
