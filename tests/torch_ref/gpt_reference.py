#!/usr/bin/python3
"""An independent reference for Colossus's GPT: plain PyTorch (autograd, nn.Linear,
nn.LayerNorm, torch.optim.AdamW), written from the GPT-2 architecture, not from our C++.

Usage: gpt_reference.py --dir DIR [--threads N]

Reads, from DIR,
  weights.safetensors  every parameter under Colossus's names (model.h), F32, and the
                       config as metadata (n_layer, n_head, n_embd, block_size,
                       vocab_size, padded_vocab_size)
  batch.safetensors    tokens, targets: I32 [B, T] (negative target = ignored), and as
                       metadata the optimizer settings: lr, min_lr, warmup_steps,
                       total_steps, beta1, beta2, eps, weight_decay, grad_clip, steps
and writes DIR/out.safetensors (all F32):
  logits [B, T, Vp]    of the first forward (columns >= V are the padding rows of wte)
  loss []              its mean cross-entropy over counted positions
  grad.<name>          the gradient of that loss for every parameter
  losses [steps]       the loss before each of `steps` AdamW steps on the same batch
  lrs, grad_norms [steps]  the learning rate and pre-clipping gradient norm of each step
  final.<name>         every parameter after the last step

Everything runs in float32, like the C++ CPU backend. Depends on torch only (no numpy,
no `safetensors` package): Debian's python3-torch, which imports under /usr/bin/python3.
"""

import argparse
import ctypes
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- safetensors, minimal ------------------------------------------------------------

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
    "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
    "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path):
    """Returns ({name: tensor}, {metadata key: value}). Tensors own their memory."""
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        dtype = _DTYPES[info["dtype"]]
        shape = list(info["shape"])
        begin, end = info["data_offsets"]
        numel = math.prod(shape)
        if end - begin != numel * torch.empty((), dtype=dtype).element_size():
            raise ValueError(f"{path}: tensor {name}: offsets do not match dtype and shape")
        if numel == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            tensors[name] = torch.frombuffer(raw, dtype=dtype, count=numel,
                                             offset=base + begin).reshape(shape).clone()
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} (in insertion order) and string metadata."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        blobs.append(ctypes.string_at(t.data_ptr(), nbytes) if nbytes else b"")
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ---- The model: GPT-2 ------------------------------------------------------------------

class CausalSelfAttention(nn.Module):
    def __init__(self, C, n_head):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        # qkv features are [3, NH, hs]: all query heads, then keys, then values.
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # [B, NH, T, hs]
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.fc = nn.Linear(C, 4 * C)
        self.proj = nn.Linear(4 * C, C)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, C, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.attn = CausalSelfAttention(C, n_head)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.mlp = MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Parameter names (named_parameters()) are exactly Colossus's (model.h)."""

    def __init__(self, n_layer, n_head, n_embd, block_size, vocab_size, padded_vocab_size):
        super().__init__()
        self.vocab_size = vocab_size
        self.wte = nn.Parameter(torch.zeros(padded_vocab_size, n_embd))
        self.wpe = nn.Parameter(torch.zeros(block_size, n_embd))
        self.h = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, eps=1e-5)

    def forward(self, tokens, targets=None):
        """tokens, targets: int64 [B, T]. Returns (logits [B, T, Vp], mean loss or None)."""
        B, T = tokens.shape
        x = self.wte[tokens] + self.wpe[:T]
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        logits = x @ self.wte.t()  # tied output projection over the padded vocabulary
        loss = None
        if targets is not None:
            V = self.vocab_size
            loss = F.cross_entropy(logits[..., :V].reshape(-1, V), targets.reshape(-1),
                                   ignore_index=-1)
        return logits, loss


def config_from_metadata(meta):
    keys = ["n_layer", "n_head", "n_embd", "block_size", "vocab_size", "padded_vocab_size"]
    return {k: int(meta[k]) for k in keys}


def load_model(weights_path):
    """A GPT with the config and weights of a SaveWeights file."""
    tensors, meta = read_safetensors(weights_path)
    model = GPT(**config_from_metadata(meta))
    params = dict(model.named_parameters())
    if set(params) != set(tensors):
        raise ValueError(f"{weights_path}: names differ from the model's: "
                         f"missing {sorted(set(params) - set(tensors))}, "
                         f"unexpected {sorted(set(tensors) - set(params))}")
    with torch.no_grad():
        for name, p in params.items():
            if tuple(tensors[name].shape) != tuple(p.shape):
                raise ValueError(f"{weights_path}: {name} has shape "
                                 f"{list(tensors[name].shape)}, expected {list(p.shape)}")
            p.copy_(tensors[name])
    return model


# ---- The optimizer ---------------------------------------------------------------------

def learning_rate_at(opt, step):
    """Linear warmup (step s uses lr * (s+1) / warmup), then cosine to min_lr at
    total_steps, then min_lr; total_steps <= 0 means constant after warmup."""
    lr, min_lr = opt["lr"], opt["min_lr"]
    warmup, total = opt["warmup_steps"], opt["total_steps"]
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if total <= 0:
        return lr
    if step >= total:
        return min_lr
    ratio = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def make_adamw(model, opt):
    """torch.optim.AdamW with weight decay on the 2-D parameters only."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"])


def train_step(model, optimizer, opt, step, tokens, targets):
    """One step: forward, backward, global-norm clipping, AdamW. Returns (loss, lr, norm)."""
    optimizer.zero_grad(set_to_none=False)
    _, loss = model(tokens, targets)
    loss.backward()
    params = list(model.parameters())
    if opt["grad_clip"] > 0:
        # scale = min(1, clip / (norm + 1e-6))
        norm = torch.nn.utils.clip_grad_norm_(params, opt["grad_clip"])
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    lr = learning_rate_at(opt, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    return loss.item(), lr, norm.item()


def optimizer_settings(meta):
    return {
        "lr": float(meta["lr"]), "min_lr": float(meta["min_lr"]),
        "warmup_steps": int(meta["warmup_steps"]), "total_steps": int(meta["total_steps"]),
        "beta1": float(meta["beta1"]), "beta2": float(meta["beta2"]),
        "eps": float(meta["eps"]), "weight_decay": float(meta["weight_decay"]),
        "grad_clip": float(meta["grad_clip"]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # nothing here is random; set anyway so reruns are identical

    model = load_model(os.path.join(args.dir, "weights.safetensors"))
    batch, meta = read_safetensors(os.path.join(args.dir, "batch.safetensors"))
    tokens = batch["tokens"].long()
    targets = batch["targets"].long().clamp(min=-1)  # any negative target is ignored
    opt = optimizer_settings(meta)
    steps = int(meta["steps"])

    out = {}
    logits, loss = model(tokens, targets)
    loss.backward()
    out["logits"] = logits.detach()
    out["loss"] = loss.detach().reshape(())
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.detach().clone()

    optimizer = make_adamw(model, opt)
    losses, lrs, norms = [], [], []
    for step in range(steps):
        l, lr, n = train_step(model, optimizer, opt, step, tokens, targets)
        losses.append(l)
        lrs.append(lr)
        norms.append(n)
    out["losses"] = torch.tensor(losses, dtype=torch.float32)
    out["lrs"] = torch.tensor(lrs, dtype=torch.float32)
    out["grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    for name, p in model.named_parameters():
        out["final." + name] = p.detach().clone()
    write_safetensors(os.path.join(args.dir, "out.safetensors"), out,
                      {"torch_version": torch.__version__, "threads": args.threads})


if __name__ == "__main__":
    sys.exit(main())
