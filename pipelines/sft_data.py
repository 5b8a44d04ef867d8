#!/usr/bin/env python3
"""Chat data for the sft pipeline (pipelines/sft.mk) from what Debian ships.

  words     WordNet's glosses (wordnet-base, /usr/share/wordnet): each
            one-word lemma in common use (a sense of it tagged in WordNet's
            sense-tagged corpus) with its most frequent sense (the first
            synset its index file lists; nouns before verbs, adjectives,
            adverbs), the gloss's definition (before its quoted examples
            and its first ';')
  commands  the NAME lines of the man pages in sections 1 and 8, as
            `apropos -l -s 1,8 .` prints them ("grep (1) - print lines
            that match patterns"); a description shared by several
            pages (aliases) is kept once, under its first name

Facts with a definition of 2 to MAX_WORDS words are kept; of each kind,
the first WORDS (COMMANDS) in the order of the MD5 of "KIND NAME" (a fixed
shuffle), whose first HELD are held out. Writes into OUT:

  facts.jsonl       every fact kept, held out ones included, as plain-text
                    documents ({"text"}) for pretraining, in PHRASINGS ways:
                    a dictionary's or a manual's heading, "The word 'X'
                    means:" / "The command `X`:", and the question as a FAQ
                    asks it; each with the definition on a line of its own,
                    as a chat reply begins (after "assistant\n"), so that
                    its first token is the one the reply starts with
  train.jsonl       the facts not held out as conversations:
                    "What does the word 'X' mean?" / "What does the
                    command `X` do?" -> the definition
  held-out.jsonl    the held-out facts, the same way: the first HELD
                    words, then the first HELD commands
  stats.json        the counts

python3 standard library only.
"""
import argparse
import hashlib
import json
import os
import re
import sys

POS = [("noun", "noun"), ("verb", "verb"), ("adj", "adjective"), ("adv", "adverb")]


def definition(gloss):
    """The definition part of a WordNet gloss: before the quoted examples and the first ';'."""
    d = gloss.split('"', 1)[0]
    d = d.split(";", 1)[0]
    return " ".join(d.split()).rstrip(" ;,:")


def wordnet(root):
    """lemma -> (part of speech, definition) of its most frequent sense."""
    out = {}
    for pos, name in POS:
        first = {}
        with open(os.path.join(root, "index." + pos), encoding="utf-8") as f:
            for line in f:
                if line.startswith(" "):  # the licence
                    continue
                fields = line.split()
                lemma, n_synsets = fields[0], int(fields[2])
                tagged = int(fields[-n_synsets - 1])   # tagsense_cnt: senses of it in the tagged corpus
                if re.fullmatch(r"[a-z]{3,}", lemma) and tagged > 0 and lemma not in out:
                    first[fields[-n_synsets]] = first.get(fields[-n_synsets], []) + [lemma]
        with open(os.path.join(root, "data." + pos), encoding="utf-8") as f:
            for line in f:
                if line.startswith(" ") or "|" not in line:
                    continue
                offset = line.split(" ", 1)[0]
                for lemma in first.get(offset, []):
                    out.setdefault(lemma, (name, definition(line.split("|", 1)[1])))
    return out


def commands(path):
    """command -> (section, description), from apropos's lines."""
    by_desc = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"^(\S+) \((\d)\)\s+- (.*)$", line.rstrip("\n"))
            if not m:
                continue
            name, desc = m.group(1), " ".join(m.group(3).split()).rstrip(".")
            # not: several names in one line, help2man's stubs, pages whose NAME man-db could not read
            if (not re.fullmatch(r"[a-z][a-z0-9._+-]*", name) or " - " in desc or desc.lower().startswith("manual page for")
                    or desc.startswith("(unknown subject)")):
                continue
            if desc not in by_desc or name < by_desc[desc][0]:
                by_desc[desc] = (name, m.group(2))
    return {name: (sec, desc) for desc, (name, sec) in by_desc.items()}


def order(kind, names):
    return sorted(names, key=lambda n: hashlib.md5(f"{kind} {n}".encode()).hexdigest())


def conversation(question, answer):
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wordnet", default="/usr/share/wordnet")
    ap.add_argument("--apropos", required=True, help="the output of apropos -l -s 1,8 .")
    ap.add_argument("--words", type=int, default=2000, help="words kept")
    ap.add_argument("--commands", type=int, default=1500, help="commands kept")
    ap.add_argument("--held", type=int, default=200, help="of each kind, held out")
    ap.add_argument("--max-words", type=int, default=10)
    ap.add_argument("--phrasings", type=int, choices=(1, 2, 3), default=3, help="ways each fact is said in facts.txt")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    fits = lambda d: 2 <= len(d.split()) <= a.max_words
    wn = {k: v for k, v in wordnet(a.wordnet).items() if fits(v[1])}
    cmd = {k: v for k, v in commands(a.apropos).items() if fits(v[1])}
    if len(wn) < a.words or len(cmd) < a.commands:
        sys.exit(f"sft_data.py: {len(wn)} words and {len(cmd)} commands with definitions of 2 to {a.max_words} words, "
                 f"fewer than --words {a.words} and --commands {a.commands} (wordnet-base installed? the man pages' "
                 f"index made? (mandb))")
    word_facts = [lambda n: f"{n} ({wn[n][0]})\n{wn[n][1]}",
                  lambda n: f"The word '{n}' means:\n{wn[n][1]}",
                  lambda n: f"What does the word '{n}' mean?\n{wn[n][1]}"]
    command_facts = [lambda n: f"{n} ({cmd[n][0]})\n{cmd[n][1]}",
                     lambda n: f"The command `{n}`:\n{cmd[n][1]}",
                     lambda n: f"What does the command `{n}` do?\n{cmd[n][1]}"]
    kinds = [
        ("word", order("word", wn)[: a.words], word_facts[: a.phrasings],
         lambda n: f"What does the word '{n}' mean?", lambda n: wn[n][1]),
        ("command", order("command", cmd)[: a.commands], command_facts[: a.phrasings],
         lambda n: f"What does the command `{n}` do?", lambda n: cmd[n][1]),
    ]
    os.makedirs(a.out, exist_ok=True)
    facts, train, held = [], [], []
    for kind, names, phrasings, question, answer in kinds:
        for i, n in enumerate(names):
            facts += [fact(n) for fact in phrasings]
            (held if i < a.held else train).append(conversation(question(n), answer(n)))
    # the kinds interleaved in a fixed order, so that no stretch of the data is one kind
    mix = lambda xs: [x for _, x in sorted(enumerate(xs), key=lambda p: hashlib.md5(str(p[0]).encode()).hexdigest())]
    with open(os.path.join(a.out, "facts.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": x}, ensure_ascii=False) + "\n" for x in mix(facts))
    for name, rows in (("train.jsonl", mix(train)), ("held-out.jsonl", held)):
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    stats = {"words_available": len(wn), "commands_available": len(cmd), "facts": len(train) + len(held),
             "documents": len(facts), "train": len(train), "held_out": len(held)}
    with open(os.path.join(a.out, "stats.json"), "w") as f:
        json.dump(stats, f)
        f.write("\n")
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
