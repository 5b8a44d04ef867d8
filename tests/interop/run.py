#!/usr/bin/env python3
"""make test-interop: sigma-export's directories in the real clients, with
transformers, torch and safetensors from pip (not needed by `make test`).
Trains a small model on real text with the sigma tools, exports it, and
checks, printing TAP:
  - the safetensors library opens every exported file; the header follows the spec
  - AutoModelForCausalLM loads it: logits equal sigma's CPU forward (fp32, 1e-4)
  - AutoTokenizer loads tokenizer.json: ids equal sigma-tokenize's on real text
  - greedy generation of 64 tokens over several prompts of different lengths,
    batched together by sigma-generate --jsonl, is identical to transformers'
    generate(do_sample=False), prompt by prompt; so is the one-prompt path
  - the logits of each of those 64 steps through sigma's key-value cache equal
    transformers' (output_logits) to 1e-4 relative
  - the bf16 export loads and agrees with sigma at bf16 precision
  - with a chat tokenizer, apply_chat_template (add_generation_prompt true and
    false) gives exactly sigma's chat_encode ids, and an sft checkpoint ends
    generation at <|im_end|> then <|endoftext|>
"""
import glob, json, os, struct, subprocess, sys, tempfile
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

BIN, TESTBIN = os.environ["SIGMA_BIN"], os.environ["SIGMA_TESTBIN"]
n = 0
failed = 0
def ok(cond, name):
    global n, failed
    n += 1
    failed += not cond
    print(("ok" if cond else "not ok") + f" {n} - {name}", flush=True)
def run(*args, **kw):
    return subprocess.run([os.path.join(BIN, args[0])] + list(args[1:]), check=True, capture_output=True, **kw).stdout

tmp = tempfile.mkdtemp(prefix="sigma-interop.")
texts = sorted(glob.glob("/usr/share/common-licenses/*"))
texts = [t for t in texts if os.path.isfile(t) and not os.path.islink(t)][:12]
tok = os.path.join(tmp, "tok.txt")
run("sigma-tokenize", "train", "-q", "--vocab-size", "1024", "--pattern", "o200k", "-o", tok, *texts)
stream = run("sigma-tokenize", "encode", "-q", "-t", tok, *texts)
subprocess.run([os.path.join(BIN, "sigma-shard"), "-q", "-o", os.path.join(tmp, "shards"), "--val-fraction", "0"],
               input=stream, check=True)
cfg = os.path.join(tmp, "cfg.json")
json.dump({"vocab_size": 1024, "d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16,
           "n_experts": 8, "d_expert": 32, "top_k": 2, "max_seq_len": 256}, open(cfg, "w"))
run_dir = os.path.join(tmp, "run")
run("sigma-pretrain", "-q", "--config", cfg, "--data", os.path.join(tmp, "shards"), "--out", run_dir, "--seq-len", "64",
    "--micro-batch", "8", "--batch-tokens", "512", "--steps", "80", "--eval-every", "0", "--lr", "1e-2")
hf32, hf16 = os.path.join(tmp, "hf32"), os.path.join(tmp, "hf16")
run("sigma-export", run_dir, "-t", tok, "-o", hf32, "--dtype", "fp32", "--max-shard-size", "300k")
run("sigma-export", run_dir, "-t", tok, "-o", hf16)

# safetensors, strictly
files = sorted(glob.glob(os.path.join(hf32, "*.safetensors")))
good = len(files) > 1 and os.path.exists(os.path.join(hf32, "model.safetensors.index.json"))
for f in files:
    raw = open(f, "rb").read()
    hl = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + hl])
    good &= hl % 8 == 0 and h.get("__metadata__") == {"format": "pt"}
    spans = sorted(v["data_offsets"] for k, v in h.items() if k != "__metadata__")
    good &= spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] == len(raw) - 8 - hl
    with safe_open(f, framework="pt") as s:
        good &= all(s.get_tensor(k).dtype == torch.float32 for k in s.keys())
ok(good, f"{len(files)} sharded safetensors files: spec-conformant headers, opened by the safetensors library")

# the model in transformers
text = open(texts[0], encoding="utf-8", errors="replace").read()[:3000]
htok = AutoTokenizer.from_pretrained(hf32)
ids = run("sigma-tokenize", "encode", "-q", "-t", tok, "--ids", texts[0]).split()
ok(htok.encode(open(texts[0], encoding="utf-8").read(), add_special_tokens=False) == [int(i) for i in ids],
   f"AutoTokenizer from tokenizer.json encodes {texts[0]} to sigma-tokenize's {len(ids)} ids")
all_same = True
for t in texts[1:]:
    try:
        s = open(t, encoding="utf-8").read()
    except UnicodeDecodeError:
        continue
    all_same &= htok.encode(s, add_special_tokens=False) == [int(i) for i in run("sigma-tokenize", "encode", "-q", "-t", tok, "--ids", t).split()]
ok(all_same, f"and every other license text")

model = AutoModelForCausalLM.from_pretrained(hf32, dtype=torch.float32).eval()
ok(type(model).__name__ == "Qwen3MoeForCausalLM" and model.config.norm_topk_prob is False, "loads as Qwen3MoeForCausalLM, norm_topk_prob false")
prompt = htok.encode(text[:400], add_special_tokens=False)[:64]
with torch.no_grad():
    hl = model(torch.tensor([prompt])).logits[0].numpy()
raw = subprocess.run([os.path.join(TESTBIN, "model_logits"), run_dir] + [str(i) for i in prompt], check=True, capture_output=True).stdout
import numpy as np
sl = np.frombuffer(raw, dtype=np.float32).reshape(len(prompt), -1)
err = float(np.abs(sl - hl).max() / np.abs(hl).max())
ok(err < 1e-4, f"logits over {len(prompt)} tokens of real text equal sigma's CPU forward (relative error {err:.2g})")
eot = htok.convert_tokens_to_ids("<|endoftext|>")
# prompts of different lengths (the empty one a new document), each after an
# end-of-text token as sigma-generate puts it; transformers one at a time
starts = ["Everyone is permitted to copy and distribute", "", "The", text[400:850], text[1200:1400]]
hf = {}
for st in starts:
    p = [eot] + htok.encode(st, add_special_tokens=False)
    ids = torch.tensor([p])   # the mask given: generate would take the end-of-text token, its pad, for padding
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=64, do_sample=False, eos_token_id=None,
                             pad_token_id=eot, output_logits=True, return_dict_in_generate=True)
    hf[st] = (p, out.sequences[0, len(p):].tolist(), torch.cat(out.logits).numpy())
lines = "".join(json.dumps({"prompt": st}) + "\n" for st in starts)
got = [json.loads(l) for l in run("sigma-generate", run_dir, "-t", tok, "--jsonl", "--ids", "--keep-going", "-n", "64", "--batch", "3",
                                  "-q", input=lines.encode()).decode().splitlines()]
same = [g["ids"] == hf[st][1] for g, st in zip(got, starts)]
ok(len(got) == len(starts) and all(same),
   f"greedy generation of 64 tokens over {len(starts)} prompts of {sorted(len(hf[st][0]) for st in starts)} tokens, batched, is identical")
for g, st in zip(got, starts):
    if g["ids"] != hf[st][1]: print("# prompt", hf[st][0], "\n# hf   ", hf[st][1], "\n# sigma", g["ids"])
s = [int(x) for x in run("sigma-generate", run_dir, "-t", tok, "-p", starts[0], "-n", "64", "--ids", "--keep-going").split()]
ok(s == hf[starts[0]][1], "and so is one prompt's")
worst = 0.0
for st in starts:
    p, _, hl = hf[st]
    raw = subprocess.run([os.path.join(TESTBIN, "kv_logits"), run_dir, "64"] + [str(i) for i in p], check=True, capture_output=True).stdout
    kl = np.frombuffer(raw, dtype=np.float32).reshape(64, -1)
    worst = max(worst, float(np.abs(kl - hl).max() / np.abs(hl).max()))
ok(worst < 1e-4, f"the logits of each of the 64 steps through the key-value cache equal transformers' (relative error {worst:.2g})")
m16 = AutoModelForCausalLM.from_pretrained(hf16, dtype=torch.float32).eval()
with torch.no_grad():
    h16 = m16(torch.tensor([prompt])).logits[0].numpy()
err16 = float(np.abs(sl - h16).max() / np.abs(hl).max())
ok(err16 < 3e-2, f"the bf16 export agrees at bf16 precision (relative error {err16:.2g})")

# chat: a tokenizer with <|im_start|> and <|im_end|>, a model that knows it
# (two steps are enough: the ids are the tokenizer's), made an sft checkpoint
# by adding sigma-sft's section to its config.json (which no checksum covers)
chat_tok = os.path.join(tmp, "chat.tok")
run("sigma-tokenize", "train", "-q", "--chat", "--vocab-size", "1024", "--pattern", "o200k", "-o", chat_tok, *texts)
stream = run("sigma-tokenize", "encode", "-q", "-t", chat_tok, texts[0])
subprocess.run([os.path.join(BIN, "sigma-shard"), "-q", "-o", os.path.join(tmp, "chat-shards"), "--val-fraction", "0"],
               input=stream, check=True)
chat_run = os.path.join(tmp, "chat-run")
run("sigma-pretrain", "-q", "--config", cfg, "--data", os.path.join(tmp, "chat-shards"), "--out", chat_run, "--seq-len", "64",
    "--micro-batch", "2", "--batch-tokens", "128", "--steps", "2", "--eval-every", "0")
sft = os.path.join(tmp, "sft")
step = os.path.join(chat_run, open(os.path.join(chat_run, "latest")).read().strip())
subprocess.run(["cp", "-r", step, sft], check=True)
c = json.load(open(os.path.join(step, "config.json")))
c["sft"], c["created_by"] = {"template": "chatml", "train_on": "assistant"}, "sigma-sft"
json.dump(c, open(os.path.join(sft, "config.json"), "w"))
hf_sft = os.path.join(tmp, "hf-sft")
run("sigma-export", sft, "-t", chat_tok, "-o", hf_sft)
ctok = AutoTokenizer.from_pretrained(hf_sft)

def sigma_chat(messages, gen):
    out = subprocess.run([os.path.join(TESTBIN, "chat_ids"), chat_tok] + (["--generation-prompt"] if gen else []),
                         input=json.dumps({"messages": messages}).encode(), check=True, capture_output=True).stdout
    return [int(line.split()[0]) for line in out.decode().splitlines()]

def hf_chat(messages, gen):
    r = ctok.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True)
    return list(r["input_ids"] if hasattr(r, "keys") else r)   # transformers 5 returns a BatchEncoding

S, U, A = "system", "user", "assistant"
conversations = {
    "system and user": [(S, "You are a careful reader of licenses."), (U, "What may I do with the Program?")],
    "multi-turn": [(U, "Is it free?"), (A, "Free as in freedom.\n\nNot price."), (U, " And the source?"),
                   (A, "You must offer it, with the object code.")],
    "unicode": [(S, "Réponds en français, s'il te plaît."), (U, "日本語で? Ünïcödé, ﬁ ligatures, e\u0301, emoji 🦫🚀, \u00a0nbsp"),
                (A, "Ωμέγα — «quotes» and tabs\there.")],
    "empty contents": [(S, ""), (U, ""), (A, ""), (U, "   "), (A, "\n")],
    "newlines and spaces around": [(U, "\n\n  leading and trailing  \n"), (A, "  two spaces\r\nCRLF\n")],
    "a license": [(U, open(texts[0], encoding="utf-8").read()[:2000]), (A, open(texts[1], encoding="utf-8", errors="replace").read()[:1000])],
}
for name, conv in conversations.items():
    messages = [{"role": r, "content": c} for r, c in conv]
    for gen in (False, True):
        h, sg = hf_chat(messages, gen), sigma_chat(messages, gen)
        ok(h == sg, f"apply_chat_template, {name}, add_generation_prompt={gen}: sigma's {len(sg)} ids")
        if h != sg: print("# hf   ", h, "\n# sigma", sg)
# Not a check: content holding a special token's text is text to sigma's
# chat_encode, while transformers' tokenizer splits the special out of it.
m = [{"role": U, "content": "say <|im_end|>"}]
print(f"# by design: content '<|im_end|>' is {len(sigma_chat(m, False)) - len(hf_chat(m, False))} tokens longer in sigma (text, not the special)")
from transformers import GenerationConfig
im_end, eot_id = (ctok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>"))
gc = GenerationConfig.from_pretrained(hf_sft)
ok(ctok.eos_token == "<|im_end|>" and gc.eos_token_id == [im_end, eot_id] and im_end != ctok.unk_token_id,
   f"the sft export ends generation at <|im_end|> ({im_end}), then <|endoftext|> ({eot_id})")
# a model of two steps never says <|im_end|>: with the head's rows of <|im_end|>
# and of its 4th greedy token swapped it says it there, and must stop
csft = AutoModelForCausalLM.from_pretrained(hf_sft, dtype=torch.float32).eval()
p = torch.tensor([hf_chat([{"role": U, "content": "Hello"}], True)])
with torch.no_grad():
    g0 = csft.generate(p, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=eot_id)[0, p.shape[1]:].tolist()
    x = g0[3]
    w = csft.lm_head.weight
    w[[x, im_end]] = w[[im_end, x]]
    g = csft.generate(p, max_new_tokens=12, do_sample=False)[0, p.shape[1]:].tolist()
swapped = [im_end if t == x else x if t == im_end else t for t in g0]
stop = next(i for i, t in enumerate(swapped) if t in (im_end, eot_id))
ok(x != im_end and g == swapped[:stop + 1] and g[-1] == im_end,
   f"generate with the exported generation_config stops at <|im_end|> ({len(g)} of 12 tokens)")
print(f"1..{n}")
sys.exit(1 if failed else 0)
