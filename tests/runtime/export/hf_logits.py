#!/usr/bin/env python3
"""Loads a colossus-export directory in transformers' GPT2LMHeadModel and writes its
logits for a fixed batch of tokens.

Usage (under scripts/setup.sh's .venv-hf): hf_logits.py --model DIR --tokens FILE --out FILE
  --tokens  JSON list of B lists of T token ids
  --out     safetensors file with "logits" F32 [B, T, V]

Exits 1 with a message when the checkpoint does not load cleanly: a tensor the model
expected and did not find (other than the tied lm_head and the attention-mask buffers
transformers builds itself), a tensor it did not expect, or an lm_head not tied to wte.
"""

import argparse
import json
import os
import re
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import GPT2LMHeadModel  # noqa: E402

# Not stored by colossus-export on purpose: the head is tied to wte; the causal mask
# buffers are constants the model makes.
ALLOWED_MISSING = re.compile(r"^(lm_head\.weight|.*attn\.(bias|masked_bias))$")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)

    model, info = GPT2LMHeadModel.from_pretrained(
        a.model, output_loading_info=True, torch_dtype=torch.float32)
    problems = []
    missing = [k for k in info.get("missing_keys", []) if not ALLOWED_MISSING.match(k)]
    if missing:
        problems.append(f"missing keys {missing}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected keys {info['unexpected_keys']}")
    if info.get("mismatched_keys"):
        problems.append(f"mismatched keys {info['mismatched_keys']}")
    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
        problems.append("lm_head.weight is not tied to transformer.wte.weight")
    if problems:
        print(f"hf_logits.py: {a.model}: " + "; ".join(problems), file=sys.stderr)
        return 1

    with open(a.tokens) as f:
        tokens = torch.tensor(json.load(f), dtype=torch.long)
    model.eval()
    with torch.no_grad():
        logits = model(tokens).logits.float().contiguous()
    save_file({"logits": logits}, a.out)
    print(f"hf_logits.py: {a.model}: logits {list(logits.shape)} "
          f"({sum(p.numel() for p in model.parameters())} parameters in transformers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
