#!/usr/bin/python3
"""PyTorch eager's time for one training step (forward, backward, clip_grad_norm_,
AdamW) on the weights and batch colossus-cpu-bench --save-inputs DIR wrote: the same
model (tests/torch_ref/gpt_reference.py), config, batch and optimizer settings.

Usage: torch_step.py --dir DIR --threads N [--warmup W] [--steps K] [--json PATH]

For a fair comparison run it with the BLAS our binaries link (the OpenMP build of
OpenBLAS) and the same thread count:
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS=N
It reports the BLAS libraries actually mapped and, unless --any-blas, refuses to time
with any other.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "torch_ref"))

import torch  # noqa: E402

import gpt_reference as ref  # noqa: E402


def loaded_blas():
    libs = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            slash = line.find("/")
            if slash >= 0 and "blas" in line[slash:]:
                path = line[slash:].strip()
                if path not in libs:
                    libs.append(path)
    return libs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", default="")
    parser.add_argument("--any-blas", action="store_true",
                        help="time even if the OpenMP OpenBLAS is not the one loaded")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = ref.load_model(os.path.join(args.dir, "weights.safetensors"))
    batch, meta = ref.read_safetensors(os.path.join(args.dir, "batch.safetensors"))
    tokens = batch["tokens"].long()
    targets = batch["targets"].long()
    opt = ref.optimizer_settings(meta)
    optimizer = ref.make_adamw(model, opt)
    B, T = tokens.shape

    # ref.train_step's phases, timed apart: forward (with loss), backward, optimizer
    # (clip_grad_norm_ and AdamW).
    params = list(model.parameters())
    first_loss = None
    times_ms, fwd_ms, bwd_ms, opt_ms = [], [], [], []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=False)
        _, loss = model(tokens, targets)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if opt["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(params, opt["grad_clip"])
        lr = ref.learning_rate_at(opt, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        t3 = time.perf_counter()
        if first_loss is None:
            first_loss = loss.item()
        if step >= args.warmup:
            times_ms.append(1000.0 * (t3 - t0))
            fwd_ms.append(1000.0 * (t1 - t0))
            bwd_ms.append(1000.0 * (t2 - t1))
            opt_ms.append(1000.0 * (t3 - t2))

    # BLAS is loaded lazily on the first matmul: look only after the steps ran.
    blas = loaded_blas()
    wrong = [p for p in blas if "openblas-openmp" not in p]
    median = statistics.median(times_ms) if times_ms else 0.0
    result = {
        "impl": "torch", "torch": torch.__version__, "B": B, "T": T,
        "threads": torch.get_num_threads(), "warmup": args.warmup,
        "median_ms": median, "min_ms": min(times_ms) if times_ms else 0.0,
        "tokens_per_s": 1000.0 * B * T / median if median > 0 else 0.0,
        "first_loss": first_loss, "times_ms": times_ms, "blas": blas,
        "forward_ms": statistics.median(fwd_ms) if fwd_ms else 0.0,
        "backward_ms": statistics.median(bwd_ms) if bwd_ms else 0.0,
        "optimizer_ms": statistics.median(opt_ms) if opt_ms else 0.0,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
    }
    print(f"torch {torch.__version__}  B{B} T{T}  {result['threads']} threads, blas {blas}")
    print(f"  step: median {median:.1f} ms, min {result['min_ms']:.1f} ms over {args.steps} "
          f"steps ({args.warmup} warm-up); {result['tokens_per_s']:.0f} tokens/s; "
          f"first loss {first_loss:.6f}")
    print(f"  phases (median): forward {result['forward_ms']:.1f} ms, backward "
          f"{result['backward_ms']:.1f} ms, optimizer {result['optimizer_ms']:.1f} ms")
    print("JSON " + json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(result) + "\n")
    if wrong and not args.any_blas:
        print(f"error: torch used {wrong}, not the OpenMP OpenBLAS our binaries link; run with "
              "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp (or --any-blas)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
