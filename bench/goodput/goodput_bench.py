#!/usr/bin/env python3
"""colossus goodput benchmark: effective training time of a colossus-launch job of
train_gpt workers (CPU, Gloo) with a worker SIGKILLed every K steps.

  bench/goodput/goodput_bench.py --build build/release [--steps 1000] [--every 200]
      [--intervals 25 100] [--workers 2] [--seed 1] [--backoff 0] [--json out.json]

Runs, one after the other, in this one invocation (--repeat times):
  1. clean: the job with no failure (and one checkpoint, at the end); its median step
     time (steps >= 10, rank 0's own per-step timing) is the useful step time;
  2. for each checkpoint interval: the same job, checkpointing every interval steps,
     with one worker killed (SIGKILL; the rank rotates from a seeded start) each time
     the job's step reaches the next planned failure step: i*K + a seeded offset in
     [-K/4, K/4] (the offset spreads the kills over the checkpoint interval instead of
     always landing on a multiple of it).
Prints a table per run and writes everything (per failure, too) as JSON. What the
figures mean: goodput_analysis.py and bench/goodput/README.md.

--smoke: a seconds-long run of the tiny preset (the CTest uses it) that checks the
machinery, not the figure.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import goodput_analysis  # noqa: E402
import goodput_job  # noqa: E402

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.path.join(SOURCE_DIR, "build", "release"),
                   help="build directory holding train_gpt, colossus-launch, colossus-data")
    p.add_argument("--train-gpt")
    p.add_argument("--launch")
    p.add_argument("--data")
    p.add_argument("--steps", type=int, default=1000, help="training steps per job")
    p.add_argument("--every", type=int, default=200, help="K: a failure every K steps")
    p.add_argument("--intervals", type=int, nargs="+", default=[25, 100],
                   help="checkpoint intervals (steps), one failure run each")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="threads per worker")
    p.add_argument("--preset", default="demo", help="model preset (demo: L4 H4 C128, 0.8M)")
    p.add_argument("--batch", type=int, default=8, help="sequences per rank per step")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--seed", type=int, default=1, help="failure steps and ranks")
    p.add_argument("--backoff", type=float, default=0.0,
                   help="restart.backoff in seconds (the manifest's default is 5)")
    p.add_argument("--repeat", type=int, default=1, help="run the whole set this many times")
    p.add_argument("--work", help="work directory (default: a new one under $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--timeout", type=float, default=1200, help="per job, seconds")
    p.add_argument("--smoke", action="store_true",
                   help="tiny preset, 60 steps, a failure every 20, intervals 5 and 10")
    a = p.parse_args(argv)
    if a.smoke:
        a.preset, a.batch, a.seq, a.steps, a.every, a.intervals = "tiny", 2, 32, 60, 20, [5, 10]
    exe = lambda given, *rel: os.path.realpath(given or os.path.join(a.build, *rel))
    a.train_gpt = exe(a.train_gpt, "examples", "train_gpt")
    a.launch = exe(a.launch, "launcher", "colossus-launch")
    a.data = exe(a.data, "runtime", "colossus-data")
    for path in (a.train_gpt, a.launch, a.data):
        if not os.access(path, os.X_OK):
            p.error("%s: not an executable (build train_gpt, colossus-launch and colossus-data, "
                    "or pass --build)" % path)
    if a.every < 4 or a.steps <= a.every:
        p.error("--every must be >= 4 and --steps > --every")
    return a


def failure_plan(steps, every, workers, seed):
    """Planned failure steps (ascending) and the rank killed at each."""
    rng = random.Random(seed)
    at, ranks = [], []
    first_rank = rng.randrange(workers)
    i = 1
    while True:
        step = i * every + rng.randint(-(every // 4), every // 4)
        if step >= steps - 1:
            break
        at.append(step)
        ranks.append((first_rank + i - 1) % workers)
        i += 1
    return at, ranks


def worker_args(a, train_glob, interval):
    global_batch = a.batch * a.workers
    return ["--preset", a.preset, "--train", train_glob, "--steps", str(a.steps),
            "--threads", str(a.threads), "--global-batch", str(global_batch),
            "--set", "training.batch_size=%d" % a.batch, "--set", "training.seq_len=%d" % a.seq,
            "--set", "optimizer.warmup_steps=20", "--set", "sample.tokens=4",
            "--set", "output.log_every=100",
            "--checkpoint-every", str(interval), "--keep", "2"]


def prepare_data(a, work):
    text = os.path.join(SOURCE_DIR, "examples", "data", "kjv-pentateuch.txt")
    ds = os.path.join(work, "ds")
    subprocess.run([a.data, "encode", "--tokenizer", "byte", "--output", ds,
                    "--val-fraction", "0.05", text], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(ds, "train_*.bin")


def one_run(a, work, tag, interval, fail_at, fail_ranks, train_glob):
    run_dir = os.path.join(work, tag)
    shutil.rmtree(run_dir, ignore_errors=True)
    job = goodput_job.run_job(
        name=tag, run_dir=run_dir, train_gpt=a.train_gpt, launch=a.launch,
        worker_args=worker_args(a, train_glob, interval), workers=a.workers,
        fail_at_steps=fail_at, fail_ranks=fail_ranks, max_restarts=len(fail_at) + 2,
        backoff_s=a.backoff, timeout_s=a.timeout)
    # Everything observed, for analysis after the fact (goodput_analysis.analyse).
    with open(os.path.join(run_dir, "observed.json"), "w") as f:
        json.dump(job, f)
    return job


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_tables(results):
    print("%-10s %5s %9s %5s %9s %8s %8s %8s %9s %8s %6s"
          % ("run", "steps", "kills/rst", "ckpt", "launch_s", "wall_s", "useful_s", "goodput",
             "(launch)", "step_ms", "load"))
    for r in results:
        if "error" in r:
            print("%-10s %s (exit %s)" % (r["name"], r["error"], r["exit_code"]))
            continue
        print("%-10s %5d %4d/%-4d %5d %9.1f %8.1f %8.1f %7.1f%% %8.1f%% %8.1f %6.2f%s"
              % (r["name"], r["steps_completed"], r["failures_injected"], r["restarts_seen"],
                 r["interval"], r["wall_from_launch_s"], r["wall_s"], r["useful_s"],
                 100 * r["goodput"], 100 * r["goodput_from_launch"], 1e3 * r["median_step_s"],
                 r["foreign_load_cores"], "" if r["exit_code"] == 0 else "  EXIT %s" % r["exit_code"]))
    print("\nwhere the time goes (seconds; 'other' = wall - useful - the rest)")
    print("%-10s %5s %7s %8s %7s %6s %7s | %8s %7s %8s %7s %7s"
          % ("run", "redo", "redo_s", "restart", "stall", "tail", "other",
             "own:gput", "redo_s", "partial", "between", "startup"))
    for r in results:
        if "error" in r:
            continue
        l, o = r["loss_s"], r["loss_own_s"]
        print("%-10s %5d %7.1f %8.2f %7.2f %6.2f %7.1f | %7.1f%% %7.1f %8.2f %7.1f %7.2f"
              % (r["name"], l["redone_steps"], l["redone"], l["restart"], l["checkpoint_stall"],
                 l["tail"], l["other"], 100 * r["goodput_own"], o["redone"], o["partial_step"],
                 o["between_steps"], r["startup_s"]))


def print_failures(r):
    for i, f in enumerate(r.get("failures", [])):
        m = f.get("marks_after_kill", {})
        print("    kill %d: rank %d after step %d (planned %d) -> resumed at %s, redone %s; "
              "kill -> reported %s, generation formed %s, workers started %s, first worker line %s, "
              "resumed %s, next step starts %s, first step done %s s"
              % (i + 1, f["rank"], f["killed_after_step"], f["planned_step"],
                 f.get("resumed_at_step", "-"), f.get("redone_steps", "-"),
                 fmt(m.get("failure_reported_s"), ".3f"), fmt(m.get("generation_formed_s"), ".3f"),
                 fmt(m.get("workers_started_s"), ".3f"), fmt(m.get("worker_first_line_s"), ".3f"),
                 fmt(m.get("resumed_s"), ".3f"), fmt(f.get("kill_to_next_step_start_s"), ".3f"),
                 fmt(f.get("kill_to_first_step_done_s"), ".3f")))


def main(argv):
    a = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # each round's tables as soon as they exist
    work = a.work or tempfile.mkdtemp(prefix="colossus_goodput.", dir=os.environ.get("TMPDIR"))
    os.makedirs(work, exist_ok=True)
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    train_glob = prepare_data(a, work)
    fail_at, fail_ranks = failure_plan(a.steps, a.every, a.workers, a.seed)
    print("goodput: %s preset, %d workers x %d thread, batch %d x %d per rank, %d steps; "
          "a failure every %d steps: SIGKILL at steps %s (ranks %s); restart backoff %gs"
          % (a.preset, a.workers, a.threads, a.batch, a.seq, a.steps, a.every, fail_at,
             fail_ranks, a.backoff))
    print("load average before: %s; work dir %s" % (" ".join(load_before), work))

    results = []
    for rep in range(a.repeat):
        suffix = "" if a.repeat == 1 else "_%d" % (rep + 1)
        clean = one_run(a, work, "clean" + suffix, a.steps, [], [], train_glob)
        median_s = goodput_analysis.clean_median_step_s(clean)
        runs = [(clean, a.steps)]
        for interval in a.intervals:
            tag = "ckpt%d%s" % (interval, suffix)
            runs.append((one_run(a, work, tag, interval, fail_at, fail_ranks, train_glob), interval))
        print("\nround %d: clean median step %.1f ms (rank 0, steps >= %d)"
              % (rep + 1, median_s * 1e3, goodput_analysis.WARMUP_STEPS))
        round_results = []
        for job, interval in runs:
            r = goodput_analysis.analyse(job, median_s)
            r["interval"] = interval
            r["clean_median_step_s"] = median_s
            r["round"] = rep + 1
            round_results.append(r)
        print_tables(round_results)
        for r in round_results[1:]:
            print(r["name"] + ":")
            print_failures(r)
        results.extend(round_results)

    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    doc = {
        "benchmark": "goodput",
        "started_utc": started,
        "config": {"preset": a.preset, "workers": a.workers, "threads": a.threads,
                   "batch": a.batch, "seq_len": a.seq, "steps": a.steps, "every": a.every,
                   "intervals": a.intervals, "seed": a.seed, "backoff_s": a.backoff,
                   "failure_steps": fail_at, "failure_ranks": fail_ranks},
        "machine": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after},
        "runs": results,
    }
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
        print("\nJSON: %s" % a.json)
    print("load average after: %s" % " ".join(load_after))
    if not a.keep and not a.work:
        shutil.rmtree(work, ignore_errors=True)
    ok = all(r.get("exit_code") == 0 and "error" not in r for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
