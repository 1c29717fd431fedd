#!/usr/bin/env python3
"""PyTorch's time for one GPT training step on a CUDA GPU, the way a careful PyTorch user
writes it: fp32 master weights, bf16 autocast, F.scaled_dot_product_attention(is_causal=True),
fused AdamW, torch.compile. Same model, weights, batch and optimizer settings as
colossus-cpu-bench --device cuda --save-inputs DIR wrote.

Usage: gpt2_step_torch.py --dir DIR [--warmup W] [--steps K] [--json PATH] [--no-compile]

The step (as ours): zero grads, forward with loss, backward, global-norm clipping, AdamW
on the learning-rate schedule; each timed step ends with torch.cuda.synchronize(). The
architecture is tests/torch_ref/gpt_reference.py's (GPT-2, tied output projection over the
padded vocabulary, loss over the first V columns); only attention differs, by using SDPA
(its flash backend in bf16) instead of the explicit masked softmax.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "torch_ref"))
# The bundle (scripts/gpu-bundle.sh) ships gpt_reference.py beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import gpt_reference as ref  # noqa: E402


class CausalSelfAttention(nn.Module):
    def __init__(self, C, n_head):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.qkv(x).split(C, dim=2)  # [3, NH, hs] per token, as ours
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, C, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.attn = CausalSelfAttention(C, n_head)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.mlp = ref.MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(ref.GPT):
    """gpt_reference.GPT (same parameter names) with SDPA attention blocks."""

    def __init__(self, n_layer, n_head, n_embd, block_size, vocab_size, padded_vocab_size):
        super().__init__(n_layer, n_head, n_embd, block_size, vocab_size, padded_vocab_size)
        self.h = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])


def load_model(weights_path):
    tensors, meta = ref.read_safetensors(weights_path)
    model = GPT(**ref.config_from_metadata(meta))
    params = dict(model.named_parameters())
    if set(params) != set(tensors):
        raise ValueError(f"{weights_path}: names differ from the model's: "
                         f"missing {sorted(set(params) - set(tensors))}, "
                         f"unexpected {sorted(set(tensors) - set(params))}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name])
    return model, ref.config_from_metadata(meta)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps first (the first compiles)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", default="")
    parser.add_argument("--no-compile", action="store_true", help="eager (for debugging)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("error: torch.cuda.is_available() is False (torch %s, built for CUDA %s)"
              % (torch.__version__, torch.version.cuda), file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (none in the bf16 path)
    torch.backends.cudnn.allow_tf32 = True

    model, cfg = load_model(os.path.join(args.dir, "weights.safetensors"))
    model.to(dev)
    batch, meta = ref.read_safetensors(os.path.join(args.dir, "batch.safetensors"))
    tokens = batch["tokens"].long().to(dev)
    targets = batch["targets"].long().to(dev)
    opt = ref.optimizer_settings(meta)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    # The optimizer runs eagerly (fused kernels), so a new lr each step recompiles nothing.
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"], fused=True)
    B, T = tokens.shape
    params = list(model.parameters())
    fwd = model if args.no_compile else torch.compile(model)

    def step(i):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            _, loss = fwd(tokens, targets)
        loss.backward()
        if opt["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(params, opt["grad_clip"], foreach=True)
        lr = ref.learning_rate_at(opt, i)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        return loss

    first_loss = None
    times_ms = []
    for i in range(args.warmup + args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step(i)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        if first_loss is None:
            first_loss = loss.item()
        if i >= args.warmup:
            times_ms.append(1000.0 * (t1 - t0))

    median = statistics.median(times_ms) if times_ms else 0.0
    tokens_per_s = 1000.0 * B * T / median if median > 0 else 0.0
    result = {
        "impl": "torch", "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(), "compiled": not args.no_compile,
        "config": cfg, "B": B, "T": T, "warmup": args.warmup,
        "median_ms": median, "min_ms": min(times_ms) if times_ms else 0.0,
        "tokens_per_s": tokens_per_s, "first_loss": first_loss, "times_ms": times_ms,
        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) on {result['gpu']}  B{B} T{T}"
          f"  {'torch.compile' if result['compiled'] else 'eager'}, bf16 autocast, fused AdamW")
    print(f"  step: median {median:.1f} ms, min {result['min_ms']:.1f} ms over {args.steps} steps "
          f"({args.warmup} warm-up); {tokens_per_s:.0f} tokens/s; first loss {first_loss:.6f}")
    print("JSON " + json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
