#!/usr/bin/env python3
"""The peer of sigma-generate in bench/generate.sh: transformers' generate on
the same exported model, greedy, with its key-value cache (DynamicCache),
after an end-of-text token as sigma-generate puts one before a prompt.
Prefill: the prompt's forward that fills the cache, timed alone. Decode:
generate(NEW tokens) less generate(1 token), over the NEW - 1 steps between
(so the same steps as sigma-generate's decode: the last token is not fed
back). Best of REPS each, after one run to warm up. Prints one JSON line.
On DEVICE cuda the model is bf16 and the clock waits for the GPU.

    python3 bench/generate_hf.py HF_DIR PROMPT_FILE NEW THREADS REPS [DEVICE]
"""
import json, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

hf, prompt_path, new, threads, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
device = sys.argv[6] if len(sys.argv) > 6 else "cpu"
torch.set_num_threads(threads)
tok = AutoTokenizer.from_pretrained(hf)
model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32 if device == "cpu" else torch.bfloat16).to(device).eval()
eot = tok.convert_tokens_to_ids("<|endoftext|>")
text = open(prompt_path, encoding="utf-8").read()
if text.endswith("\n"): text = text[:-1]   # as sigma-generate reads a prompt file
ids = torch.tensor([[eot] + tok.encode(text, add_special_tokens=False)], device=device)
mask = torch.ones_like(ids)   # the end-of-text token is no padding

def generate(n):
    return model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=eot)

def sync():
    if device != "cpu": torch.cuda.synchronize()

def best(f):
    f()
    times = []
    for _ in range(reps):
        sync(); t0 = time.perf_counter(); f(); sync(); times.append(time.perf_counter() - t0)
    return min(times)

with torch.inference_mode():
    prefill = best(lambda: model(ids, attention_mask=mask, use_cache=True))
    one, full = best(lambda: generate(1)), best(lambda: generate(new))
print(json.dumps({"prompt_tokens": ids.shape[1], "prefill_tok_s": ids.shape[1] / prefill, "decode_tok_s": (new - 1) / (full - one),
                  "transformers": __import__("transformers").__version__, "torch": torch.__version__}))
