#!/usr/bin/env python3
"""Reference outputs for the CPU model core, from an independent PyTorch
implementation of the model of DESIGN.md (and, when installed, from Hugging
Face transformers' Qwen3MoeForCausalLM with the same weights).

Writes tests/fixtures/model/:
  case-N.json                config, balance options, tokens, targets, mask
  case-N.model.safetensors   the weights (our names = Hugging Face's)
  case-N.grads.safetensors   "grad.NAME": d(total loss)/d(weight)
  case-N.ref.safetensors     "ref.logits" [B*T, V], "ref.loss" [ce, balance, z, total]
  case-N.hf.safetensors      "ref.hf_logits" from transformers (when installed
                             and the case has one k for every layer)
The C test (tests/unit/test_model_ref.c) reads them; CI needs no Python.
Run: python3 tests/make_model_fixtures.py  (pip install torch safetensors [transformers])
"""
import json, math, os, sys
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "model")
TEXT = "/usr/share/common-licenses/GPL-3"     # real text every Debian system has

CFG = dict(vocab_size=300, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
           n_experts=8, d_expert=16, rope_theta=10000.0, norm_eps=1e-6, tie_embeddings=False, max_seq_len=256)
B, T = 2, 12

CASES = [
    dict(top_k=[2, 1], balance="top1-lbl", coef=0.05, tau=0.1, z=0.01, mask=True),
    dict(top_k=[2, 2], balance="lbl", coef=0.05, tau=0.1, z=0.0, mask=False),
]


def names(c):
    yield "model.embed_tokens.weight", (c["vocab_size"], c["d_model"])
    d, hd = c["d_model"], c["head_dim"]
    for l in range(c["n_layers"]):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", (d,)
        yield p + "self_attn.q_proj.weight", (c["n_heads"] * hd, d)
        yield p + "self_attn.k_proj.weight", (c["n_kv_heads"] * hd, d)
        yield p + "self_attn.v_proj.weight", (c["n_kv_heads"] * hd, d)
        yield p + "self_attn.o_proj.weight", (d, c["n_heads"] * hd)
        yield p + "self_attn.q_norm.weight", (hd,)
        yield p + "self_attn.k_norm.weight", (hd,)
        yield p + "post_attention_layernorm.weight", (d,)
        yield p + "mlp.gate.weight", (c["n_experts"], d)
        for e in range(c["n_experts"]):
            yield p + f"mlp.experts.{e}.gate_proj.weight", (c["d_expert"], d)
            yield p + f"mlp.experts.{e}.up_proj.weight", (c["d_expert"], d)
            yield p + f"mlp.experts.{e}.down_proj.weight", (d, c["d_expert"])
    yield "model.norm.weight", (d,)
    yield "lm_head.weight", (c["vocab_size"], d)


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, theta, pos):     # x [B, T, nh, hd], pos [B, T]; rotate-half: i pairs with i + hd/2
    hd = x.shape[-1]
    inv = theta ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2 / hd)
    ang = pos.to(torch.float64)[:, :, None] * inv[None, None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(x.dtype)[:, :, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(x.dtype)[:, :, None, :]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def forward(W, c, case, tokens, targets, mask, pos=None):
    """pos [B, T]: each token's position in its document, 0 where one begins
    (packed rows); a token attends to the earlier tokens of its own document
    only. None: a document a row."""
    B, T = tokens.shape
    d, H, KV, hd, E = c["d_model"], c["n_heads"], c["n_kv_heads"], c["head_dim"], c["n_experts"]
    eps = c["norm_eps"]
    if pos is None:
        pos = torch.arange(T).expand(B, T)
    doc = (pos == 0).cumsum(1)                                     # [B, T]: the document of each token
    allowed = (doc[:, :, None] == doc[:, None, :]) & torch.ones(T, T, dtype=torch.bool).tril()   # [B, t, s]
    x = W["model.embed_tokens.weight"][tokens]
    bal = torch.zeros((), dtype=x.dtype)
    zl = torch.zeros((), dtype=x.dtype)
    for l in range(c["n_layers"]):
        p = f"model.layers.{l}."
        k = case["top_k"][l]
        u = rms(x, W[p + "input_layernorm.weight"], eps)
        q = (u @ W[p + "self_attn.q_proj.weight"].T).view(B, T, H, hd)
        kk = (u @ W[p + "self_attn.k_proj.weight"].T).view(B, T, KV, hd)
        v = (u @ W[p + "self_attn.v_proj.weight"].T).view(B, T, KV, hd)
        q = rope(rms(q, W[p + "self_attn.q_norm.weight"], eps), c["rope_theta"], pos)
        kk = rope(rms(kk, W[p + "self_attn.k_norm.weight"], eps), c["rope_theta"], pos)
        kk = kk.repeat_interleave(H // KV, dim=2)
        v = v.repeat_interleave(H // KV, dim=2)
        s = torch.einsum("bthd,bshd->bhts", q, kk) / math.sqrt(hd)
        s = s.masked_fill(~allowed[:, None, :, :], float("-inf"))
        a = torch.einsum("bhts,bshd->bthd", s.softmax(-1), v).reshape(B, T, H * hd)
        h = x + a @ W[p + "self_attn.o_proj.weight"].T
        u = rms(h, W[p + "post_attention_layernorm.weight"], eps).view(B * T, d)
        z = u @ W[p + "mlp.gate.weight"].T
        prob = z.softmax(-1)
        top = torch.topk(prob.detach(), k, dim=-1).indices          # [N, k], largest first
        out = torch.zeros_like(u)
        for e in range(E):
            rows, slot = (top == e).nonzero(as_tuple=True)
            if len(rows) == 0:
                continue
            xe = u[rows]
            y = (F.silu(xe @ W[p + f"mlp.experts.{e}.gate_proj.weight"].T) * (xe @ W[p + f"mlp.experts.{e}.up_proj.weight"].T)) \
                @ W[p + f"mlp.experts.{e}.down_proj.weight"].T
            out = out.index_add(0, rows, prob[rows, e:e + 1] * y)
        x = h + out.view(B, T, d)
        N = B * T
        if case["balance"] == "lbl":
            counts = torch.bincount(top.flatten(), minlength=E).to(x.dtype)
            f = counts / (N * k)
            bal = bal + case["coef"] * E * (f * prob.mean(0)).sum()
        elif case["balance"] == "top1-lbl":
            fhat = (z / case["tau"]).softmax(-1).mean(0)
            pbar = prob.gather(1, top[:, :1]).mean()
            bal = bal + case["coef"] * E * (fhat ** 2).sum() / pbar
        if case["z"] > 0:
            zl = zl + case["z"] * torch.logsumexp(z, -1).pow(2).mean()
    logits = rms(x, W["model.norm.weight"], eps) @ W["lm_head.weight"].T
    lp = logits.log_softmax(-1).view(B * T, -1)
    nll = -lp.gather(1, targets.view(-1, 1)).view(-1)
    ce = (nll * mask.view(-1)).sum() / mask.sum()
    return logits, ce, bal, zl


def hf_logits(W, c, case, tokens):
    try:
        from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    except Exception as e:
        print("transformers not available:", e, file=sys.stderr)
        return None
    if len(set(case["top_k"])) != 1:
        return None                  # HF has one k for every layer
    hc = Qwen3MoeConfig(vocab_size=c["vocab_size"], hidden_size=c["d_model"], num_hidden_layers=c["n_layers"],
                        num_attention_heads=c["n_heads"], num_key_value_heads=c["n_kv_heads"], head_dim=c["head_dim"],
                        num_experts=c["n_experts"], moe_intermediate_size=c["d_expert"],
                        num_experts_per_tok=case["top_k"][0], norm_topk_prob=False, rope_theta=c["rope_theta"],
                        rms_norm_eps=c["norm_eps"], tie_word_embeddings=False, max_position_embeddings=c["max_seq_len"],
                        decoder_sparse_step=1, mlp_only_layers=[], intermediate_size=c["d_expert"],
                        attention_bias=False, output_router_logits=False)
    model = Qwen3MoeForCausalLM(hc).float().eval()   # transformers 5's grouped_mm takes no float64
    sd = model.state_dict()
    own = {n: W[n].detach().float() for n in W}
    missing = []
    for n in sd:
        if n in own:
            sd[n].copy_(own[n])
        elif "experts.gate_up_proj" in n or "experts.down_proj" in n:   # transformers 5 fuses experts
            l = int(n.split(".")[2])
            E = c["n_experts"]
            if n.endswith("gate_up_proj"):
                sd[n].copy_(torch.stack([torch.cat([own[f"model.layers.{l}.mlp.experts.{e}.gate_proj.weight"],
                                                    own[f"model.layers.{l}.mlp.experts.{e}.up_proj.weight"]], 0) for e in range(E)]))
            else:
                sd[n].copy_(torch.stack([own[f"model.layers.{l}.mlp.experts.{e}.down_proj.weight"] for e in range(E)]))
        else:
            missing.append(n)
    if missing:
        print("HF tensors with no counterpart:", missing[:5], file=sys.stderr)
        return None
    with torch.no_grad():
        return model(tokens).logits


def main():
    torch.manual_seed(0)
    raw = open(TEXT, "rb").read()[2000:2000 + B * T + 1]
    ids = torch.tensor(list(raw), dtype=torch.long)
    tokens, targets = ids[:-1].view(B, T), ids[1:].view(B, T)
    os.makedirs(OUT, exist_ok=True)
    for i, case in enumerate(CASES):
        g = torch.Generator().manual_seed(1000 + i)
        W = {}
        for n, shape in names(CFG):
            if len(shape) == 1:
                W[n] = (1 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64))
            else:
                W[n] = 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
            W[n] = W[n].float().double().requires_grad_()     # values exact in fp32
        mask = torch.tensor([(n % 3) != 1 for n in range(B * T)], dtype=torch.float64) if case["mask"] \
            else torch.ones(B * T, dtype=torch.float64)
        logits, ce, bal, zl = forward(W, CFG, case, tokens, targets, mask)
        total = ce + bal + zl
        total.backward()
        base = os.path.join(OUT, f"case-{i}")
        save_file({n: W[n].detach().float().contiguous() for n in W}, base + ".model.safetensors", metadata={"format": "pt"})
        save_file({"grad." + n: (W[n].grad if W[n].grad is not None else torch.zeros_like(W[n])).float().contiguous() for n in W}, base + ".grads.safetensors",
                  metadata={"format": "pt"})
        save_file({"ref.logits": logits.detach().float().reshape(B * T, -1).contiguous(),
                   "ref.loss": torch.tensor([ce.item(), bal.item(), zl.item(), total.item()], dtype=torch.float32)},
                  base + ".ref.safetensors", metadata={"format": "pt"})
        hf = hf_logits(W, CFG, case, tokens)
        if hf is not None:
            err = (hf.double().reshape(B * T, -1) - logits.detach().reshape(B * T, -1)).abs().max().item()
            print(f"case {i}: HF Qwen3MoeForCausalLM logits differ from the reference by {err:.3g}", file=sys.stderr)
            save_file({"ref.hf_logits": hf.float().reshape(B * T, -1).contiguous()}, base + ".hf.safetensors",
                      metadata={"format": "pt"})
        meta = dict(config=dict(CFG, top_k=case["top_k"]), balance=case["balance"], coef=case["coef"], tau=case["tau"],
                    z=case["z"], B=B, T=T, tokens=tokens.flatten().tolist(), targets=targets.flatten().tolist(),
                    mask=mask.tolist(), torch=torch.__version__)
        json.dump(meta, open(os.path.join(OUT, f"case-{i}.json"), "w"), indent=1)
        print(f"case {i}: ce {ce.item():.6f} balance {bal.item():.6f} z {zl.item():.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
