#!/usr/bin/env python3
"""Forward + backward tokens/s of Hugging Face's Qwen3MoeForCausalLM (PyTorch
eager, CPU, fp32) at the shape of a sigma preset: the peer of
tests/helpers/model_bench.c in bench/model.sh.
usage: model_torch.py D LAYERS HEADS KV HD EXPERTS DE VOCAB B T STEPS THREADS"""
import sys, time
import torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

d, L, H, KV, hd, E, de, V, B, T, steps, threads = map(int, sys.argv[1:13])
torch.set_num_threads(threads)
cfg = Qwen3MoeConfig(vocab_size=V, hidden_size=d, num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=KV,
                     head_dim=hd, num_experts=E, moe_intermediate_size=de, intermediate_size=de, num_experts_per_tok=1,
                     norm_topk_prob=False, tie_word_embeddings=False, max_position_embeddings=T, decoder_sparse_step=1,
                     mlp_only_layers=[], output_router_logits=True, router_aux_loss_coef=1e-3)
model = Qwen3MoeForCausalLM(cfg).float().train()
ids = torch.randint(0, V, (B, T))
def step():
    model.zero_grad(set_to_none=False)
    out = model(ids, labels=ids)
    out.loss.backward()
step()
t0 = time.perf_counter()
for _ in range(steps):
    step()
dt = (time.perf_counter() - t0) / steps
print(f"{B * T / dt:.1f}")
