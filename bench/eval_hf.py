#!/usr/bin/env python3
"""The peer of sigma-eval in bench/eval.sh: multiple-choice items (sigma-eval's
generic JSON Lines form) scored with transformers by lm-evaluation-harness's
rules: each choice is " " + choice given the context, context and
continuation encoded together, the continuation's log-probabilities summed;
requests batched longest first with right padding, as sigma-eval does.
Prints one JSON line: items, seconds, items_per_s, acc.

    python3 bench/eval_hf.py HF_DIR ITEMS.jsonl THREADS BATCH WINDOW
"""
import json, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

hf, items_path, threads, batch, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
tok = AutoTokenizer.from_pretrained(hf)
model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
eot = tok.convert_tokens_to_ids("<|endoftext|>")
items = [json.loads(l) for l in open(items_path) if l.strip()]

def request(context, continuation):
    n = len(context) - len(context.rstrip(" "))
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    if not context:
        return [eot], tok.encode(continuation, add_special_tokens=False)
    whole = tok.encode(context + continuation, add_special_tokens=False)
    ctx = tok.encode(context, add_special_tokens=False)
    return ctx, whole[len(ctx):]

t0 = time.perf_counter()
reqs = []
for i, it in enumerate(items):
    for c, choice in enumerate(it["choices"]):
        ctx, cont = request(it["context"], " " + choice)
        ids = (ctx + cont)[-(window + 1):]
        reqs.append((i, c, ids[:-1], ids[len(ids) - len(cont):]))
ll = {}
order = sorted(range(len(reqs)), key=lambda r: -len(reqs[r][2]))
with torch.inference_mode():
    for at in range(0, len(order), batch):
        group = [reqs[r] for r in order[at:at + batch]]
        T = len(group[0][2])
        inp = torch.tensor([g[2] + [eot] * (T - len(g[2])) for g in group])
        logp = torch.log_softmax(model(inp).logits.float(), dim=-1)
        for row, (i, c, x, cont) in enumerate(group):
            pos = range(len(x) - len(cont), len(x))
            ll[(i, c)] = sum(logp[row, p, t].item() for p, t in zip(pos, cont))
dt = time.perf_counter() - t0
acc = sum(max(range(len(it["choices"])), key=lambda c: ll[(i, c)]) == it["label"] for i, it in enumerate(items)) / len(items)
print(json.dumps({"items": len(items), "seconds": dt, "items_per_s": len(items) / dt, "acc": acc}))
