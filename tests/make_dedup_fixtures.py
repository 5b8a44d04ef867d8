#!/usr/bin/env python3
"""Reference values for sigma-dedup from datatrove (the FineWeb pipeline).

Writes tests/fixtures/dedup/datatrove.jsonl: for each test string, datatrove's
simplify_text output, its English word tokens (spaCy), the number of 5-gram
shingles, the first shingle hashes and the full 112-value MinHash signature
(default MinhashConfig: 14 buckets x 8 hashes, seed 1, 64-bit xxhash), hex.
The first line holds the first MinHash parameters (a, b).

    python3 -m venv /tmp/dt && /tmp/dt/bin/pip install datatrove spacy xxhash tokenizers regex
    /tmp/dt/bin/python tests/make_dedup_fixtures.py

CI does not run this; tests/unit/test_dedup.c reads the committed output.
"""
import json
import os

from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
from datatrove.utils.text import simplify_text

CASES = [
    "Héllo, World! The year 2023 costs $3.50 — isn't it cannot   great?\n\tNew line 1,000,000 items.",
    "Ünïcödé ÀÉÎÕÜ façade naïve coöperate résumé Ångström",
    "Numbers: 3.14159, 2,5; ٣٤٥ and １２３ and 12.34.56 v1.2.3 x2 2x",
    "a\u00a0b\u2003c\u3000d\u2028e  \r\n f\x0bg\x1ch\x85i",
    "«quoted» “double” ‘single’ – dash — emdash … ellipsis 【brackets】 ％ ！ ？ ©®™ § ¶ • ° ±",
    "I dont know why you cant see that Im here, whos there? We're gonna go, aren't we? I'd say so.",
    "x \u0301 y \u0301z and more words here please",
    "ΑΒΓ Δέλτα Привет МИР ÉCOLE İstanbul ǅemal ﬁne straße",
    "中文，测试。日本語のテキスト、漢字 한국어 텍스트 입니다",
    "",
    "   \t\n  ",
    "only four words here",
    "exactly five words are here",
    "The committee met on Tuesday to review the proposal, and after a long discussion "
    "about costs, schedules and the risks of delay, it voted to approve the plan with two "
    "amendments: the budget must be reviewed every quarter, and the first milestone moves "
    "to the end of March. Members who could not attend were asked to send their comments "
    "in writing before Friday.",
    "The committee met on Tuesday to review the proposal; after a long discussion "
    "about costs, schedules and the risk of delay, it voted to approve the plan with two "
    "amendments. The budget must be reviewed every quarter, and the first milestone moves "
    "to the end of April. Members who could not attend were asked to send comments "
    "in writing before Friday!",
]


def main():
    sig = MinhashDedupSignature(output_folder="/tmp/sigma-dedup-fixture-sigs")
    a, b = sig.parameters
    out = [json.dumps({"params": {"a": ["%016x" % int(x) for x in a[0][:8]], "b": ["%016x" % int(x) for x in b[0][:8]]}})]
    for text in CASES:
        simple = simplify_text(text)
        words = sig.word_tokenizer.word_tokenize(simple)
        sh = sig.get_shingles(text).reshape(-1)
        rec = {"text": text, "simplified": simple, "words": words, "n_shingles": int(sh.size),
               "shingles_head": ["%016x" % int(x) for x in sh[:4]]}
        if sh.size:
            rec["signature"] = ["%016x" % int(x) for band in sig.get_signature(sh.reshape(-1, 1)) for x in band]
        out.append(json.dumps(rec, ensure_ascii=False))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "dedup", "datatrove.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", path, len(CASES), "cases")


if __name__ == "__main__":
    main()
