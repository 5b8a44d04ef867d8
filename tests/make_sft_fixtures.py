#!/usr/bin/env python3
"""Reference for supervised fine-tuning's loss, from the independent PyTorch
implementation of the model in make_model_fixtures.py: chat conversations
packed into rows as sigma-sft lays them out (lib/train/chat_data.h), with
positions restarting at each conversation (block-diagonal causal attention,
RoPE at each token's place in its conversation), an assistant-only loss
mask and padding; the masked mean cross-entropy and its gradient for every
parameter, in float64 from weights exact in fp32.

Writes tests/fixtures/sft/:
  packed.json                config, B, T, tokens, targets, mask, pos, the rows' layout
  packed.model.safetensors   the weights
  packed.grads.safetensors   "grad.NAME": d(masked mean cross-entropy)/d(weight)
  packed.ref.safetensors     "ref.logits" [B*T, V], "ref.loss" [ce]
The C test (tests/unit/test_model_sft_ref.c) reads them; CI needs no Python.
Run: python3 tests/make_sft_fixtures.py  (pip install torch safetensors)

The conversations are bytes with three specials above them (the model's
vocabulary of 300 holds them): <|im_start|> 256, <|im_end|> 257, and
<|endoftext|> 258 as padding. The template and the mask are written out
here again, as TRL's assistant-only loss defines them, not taken from
sigma: ChatML, learning an assistant message's content and its <|im_end|>.
"""
import json, os, sys
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_model_fixtures import CFG, names, forward   # noqa: E402  the one reference model

OUT = os.path.join(HERE, "fixtures", "sft")
IM_START, IM_END, PAD = 256, 257, 258
T = 96
CASE = dict(top_k=[2, 1], balance="none", coef=0.0, tau=0.1, z=0.0)

# two rows: two conversations and padding, then two that fill the row exactly
S, U, A = "system", "user", "assistant"
CONVERSATIONS = [
    [(S, "Terse."), (U, "Hi?"), (A, "Hello there.")],
    [(U, ""), (A, "Nothing to say.")],
    [(U, "1+1?"), (A, "2."), (U, "And 2+2?"), (A, "4, é.")],
    [(U, "é"), (A, "ü, okay!!!")],
]


def chatml(messages):
    """ids and learn flags: <|im_start|>ROLE\\nCONTENT<|im_end|>\\n a message;
    an assistant's content and <|im_end|> learn."""
    ids, learn = [], []
    for role, content in messages:
        head, body, a = list(f"{role}\n".encode()), list(content.encode()), int(role == A)
        ids += [IM_START] + head + body + [IM_END, ord("\n")]
        learn += [0] + [0] * len(head) + [a] * len(body) + [a, 0]
    return ids, learn


def pack(convs):
    """Rows of T as many conversations as fit, in order: each token's target
    is its successor in its conversation (the last has none: padding, mask
    0), mask the successor's learn flag, pos its place in its conversation;
    the rest of a row is padding, a document of its own, masked."""
    rows, layout = [], []
    for ids, learn in convs:
        if not rows or len(rows[-1]) + len(ids) > T:
            rows.append([])
            layout.append([])
        layout[-1].append(len(ids))
        for t in range(len(ids)):
            last = t + 1 == len(ids)
            rows[-1].append((ids[t], PAD if last else ids[t + 1], 0.0 if last else float(learn[t + 1]), t))
    for r, lay in zip(rows, layout):
        if len(r) < T:
            lay.append(T - len(r))
        r += [(PAD, PAD, 0.0, p) for p in range(T - len(r))]
    cols = [torch.tensor([[x[i] for x in r] for r in rows]) for i in range(4)]
    return cols[0].long(), cols[1].long(), cols[2].double(), cols[3].long(), layout


def weights(seed):
    g = torch.Generator().manual_seed(seed)
    W = {}
    for n, shape in names(CFG):
        w = 1 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64) if len(shape) == 1 \
            else 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
        W[n] = w.float().double().requires_grad_()     # values exact in fp32
    return W


def grads(W):
    return {n: (w.grad.clone() if w.grad is not None else torch.zeros_like(w)) for n, w in W.items()}


def main():
    convs = [chatml(c) for c in CONVERSATIONS]
    tokens, targets, mask, pos, layout = pack(convs)
    B = tokens.shape[0]
    W = weights(2000)
    logits, ce, _, _ = forward(W, CFG, CASE, tokens, targets, mask, pos)
    ce.backward()
    g = grads(W)

    # The reference against itself: each conversation alone (a row of its
    # own, no positions) gives the same masked sum and the same gradients.
    for w in W.values():
        w.grad = None
    total, learned = torch.zeros((), dtype=torch.float64), mask.sum()
    for ids, learn in convs:
        tk = torch.tensor([ids[:-1]])
        tg = torch.tensor([ids[1:]])
        mk = torch.tensor(learn[1:], dtype=torch.float64)
        _, c1, _, _ = forward(W, CFG, CASE, tk, tg, mk)
        part = c1 * mk.sum() / learned
        part.backward()
        total = total + part.detach()
    g1 = grads(W)
    gerr = max((g[n] - g1[n]).abs().max().item() for n in W)
    print(f"packed {B} rows of {T} {layout}: ce {ce.item():.9f}; conversations one by one {total.item():.9f} "
          f"(|diff| {abs(ce.item() - total.item()):.2g}, gradients max |diff| {gerr:.2g})", file=sys.stderr)
    assert abs(ce.item() - total.item()) < 1e-12 and gerr < 1e-12

    os.makedirs(OUT, exist_ok=True)
    base = os.path.join(OUT, "packed")
    save_file({n: W[n].detach().float().contiguous() for n in W}, base + ".model.safetensors", metadata={"format": "pt"})
    save_file({"grad." + n: g[n].float().contiguous() for n in W}, base + ".grads.safetensors", metadata={"format": "pt"})
    save_file({"ref.logits": logits.detach().float().reshape(B * T, -1).contiguous(),
               "ref.loss": torch.tensor([ce.item()], dtype=torch.float32)}, base + ".ref.safetensors", metadata={"format": "pt"})
    meta = dict(config=dict(CFG, top_k=CASE["top_k"]), balance=CASE["balance"], B=B, T=T,
                rows=layout, specials={"<|im_start|>": IM_START, "<|im_end|>": IM_END, "<|endoftext|>": PAD},
                conversations=[[{"role": r, "content": c} for r, c in conv] for conv in CONVERSATIONS],
                tokens=tokens.flatten().tolist(), targets=targets.flatten().tolist(), mask=mask.flatten().tolist(),
                pos=pos.flatten().tolist(), ce=ce.item(), torch=torch.__version__)
    json.dump(meta, open(base + ".json", "w"), indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
