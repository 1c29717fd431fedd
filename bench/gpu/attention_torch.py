#!/usr/bin/env python3
"""PyTorch's causal scaled_dot_product_attention (flash backend), bf16, forward and backward.

Run by colossus-attention-bench (bench/gpu/attention_bench.cu) on the same shapes; prints
one line per shape, "RESULT hs T B NH fwd_ms bwd_ms" (medians over --iters runs timed with
CUDA events after --warmup untimed ones), and free text otherwise. Exits non-zero, saying
why, when torch or its CUDA is missing or the flash backend refuses a shape.

q, k and v are strided views of one [B, T, 3, NH, hs] tensor, as in our layout (the flash
kernels take any strides with a contiguous last dimension), so neither side pays a copy.
The backward is timed as torch.autograd.grad of the attention output alone.
"""
import argparse
import statistics
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", required=True, help="hs:T:B:NH,... ")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except Exception as e:  # noqa: BLE001 - any import failure means "no torch here"
        print(f"unavailable: cannot import torch ({e})")
        return 2
    if not torch.cuda.is_available():
        print(f"unavailable: torch {torch.__version__} sees no CUDA device")
        return 2
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"{torch.cuda.get_device_name(0)}, SDPA backend FLASH_ATTENTION")

    def median_ms(fn):
        for _ in range(args.warmup):
            fn()
        times = []
        for _ in range(args.iters):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return statistics.median(times)

    for spec in args.shapes.split(","):
        hs, T, B, NH = (int(x) for x in spec.split(":"))
        gen = torch.Generator(device="cuda").manual_seed(1)
        qkv = torch.randn(B, T, 3, NH, hs, device="cuda", dtype=torch.bfloat16, generator=gen)
        # [B, NH, T, hs] views; detached leaves so that grad() returns dq, dk, dv directly.
        q, k, v = (qkv[:, :, i].transpose(1, 2).detach().requires_grad_() for i in range(3))
        dout = torch.randn(B, NH, T, hs, device="cuda", dtype=torch.bfloat16, generator=gen)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            bwd = median_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True))
        print(f"RESULT {hs} {T} {B} {NH} {fwd:.4f} {bwd:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
