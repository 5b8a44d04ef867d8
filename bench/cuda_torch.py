#!/usr/bin/env python3
"""Training speed (forward + backward, no optimizer step) of Hugging Face's
Qwen3MoeForCausalLM in PyTorch on one GPU: the PyTorch peer of sigma's CUDA
training benchmark. Random init from a config (nothing downloaded), bf16
weights, training mode, random token ids, loss with labels (cross-entropy +
load-balancing loss), loss.backward(), zero_grad. Tokens/s = B*T per step.

usage: python3 bench/cuda_torch.py [--mode eager|compile] --d D --layers L
         --heads H --kv KV --hd HD --experts E --de DE --topk K --vocab V
         --batch B --seq T [--steps S] [--warmup W] [--attn sdpa]
         [--experts-impl IMPL] [--device cuda|cpu] [--dtype bfloat16|float32]

IMPL is transformers' experts_implementation: unset = transformers' default
(grouped_mm where it can dispatch), or eager (Python loop over the experts
hit), grouped_mm, batched_mm; deepgemm / sonicmoe need Hub kernels.
--device cpu --dtype float32 is for smoke tests on a machine without a GPU.
Prints one JSON line on stdout; on failure a JSON line with "error", exit 1."""
import argparse, json, sys, time, traceback

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--mode", choices=["eager", "compile"], default="eager")
for name in ["d", "layers", "heads", "kv", "hd", "experts", "de", "topk", "vocab", "batch", "seq"]:
    p.add_argument("--" + name, type=int, required=True)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--attn", default="sdpa")
p.add_argument("--experts-impl", dest="experts_impl", default=None)
p.add_argument("--device", default="cuda")
p.add_argument("--dtype", default="bfloat16")
a = p.parse_args()

res = {"impl": "pytorch-" + a.mode, "device": a.device, "dtype": a.dtype, "B": a.batch, "T": a.seq,
       **{k: getattr(a, k) for k in ["d", "layers", "heads", "kv", "hd", "experts", "de", "topk", "vocab",
                                      "steps", "warmup"]}}
try:
    import torch, transformers
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    res.update(torch=torch.__version__, transformers=transformers.__version__)
    cuda = a.device.startswith("cuda")
    torch.manual_seed(0)
    # The same mapping as bench/model_torch.py (the CPU peer), so the two
    # benchmarks train the same architecture as sigma: every layer sparse,
    # unnormalised top-k weights, LBL at 1e-3, untied head.
    extra = {} if a.experts_impl is None else {"experts_implementation": a.experts_impl}
    cfg = Qwen3MoeConfig(vocab_size=a.vocab, hidden_size=a.d, num_hidden_layers=a.layers,
                         num_attention_heads=a.heads, num_key_value_heads=a.kv, head_dim=a.hd,
                         num_experts=a.experts, moe_intermediate_size=a.de, intermediate_size=a.de,
                         num_experts_per_tok=a.topk, norm_topk_prob=False, tie_word_embeddings=False,
                         max_position_embeddings=a.seq, decoder_sparse_step=1, mlp_only_layers=[],
                         output_router_logits=True, router_aux_loss_coef=1e-3,
                         attn_implementation=a.attn, **extra)
    # Initialising on the device skips a slow CPU init + copy at large shapes.
    with torch.device(a.device):
        model = Qwen3MoeForCausalLM(cfg)
    model = model.to(getattr(torch, a.dtype)).train()
    # Report what transformers actually resolved (it silently falls back
    # when an implementation cannot dispatch).
    res.update(attn=model.config._attn_implementation, experts_impl=model.config._experts_implementation,
               params=sum(t.numel() for t in model.parameters()))
    print(f"attention: {res['attn']}, experts: {res['experts_impl']}", file=sys.stderr)
    fwd = torch.compile(model) if a.mode == "compile" else model
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), device=a.device)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step():
        model.zero_grad()  # set_to_none, as optimizer.zero_grad() does by default
        fwd(input_ids=ids, labels=ids).loss.backward()

    # Compilation (forward and, on the first backward, the backward graph)
    # happens in the first steps: give compile a few more so that any
    # recompilation is also out of the timed loop.
    warmup = max(a.warmup, 3) if a.mode == "compile" else a.warmup
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    res["warmup"], res["warmup_s"] = warmup, round(time.perf_counter() - t0, 3)
    print(f"{warmup} warm-up steps took {res['warmup_s']} s; timing {a.steps} steps", file=sys.stderr)
    if cuda:  # peak of the timed steps (weights, grads, activations), not of compilation
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    dt = (time.perf_counter() - t0) / a.steps
    res.update(tokens_per_s=round(a.batch * a.seq / dt, 1), ms_per_step=round(dt * 1e3, 3),
               peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None)
    print(json.dumps(res), flush=True)
except Exception as e:  # OOM, compile errors, bad options: a JSON line beats a bare traceback
    traceback.print_exc(file=sys.stderr)
    res["error"] = f"{type(e).__name__}: {e}".strip()[:2000]
    print(json.dumps(res), flush=True)
    sys.exit(1)
