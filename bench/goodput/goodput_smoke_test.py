#!/usr/bin/env python3
"""The goodput benchmark's machinery, end to end at a tiny size (CTest goodput_bench_smoke,
label slow). It asserts what the benchmark claims to do, never how fast anything is:
  - it exits 0 and writes JSON with the clean run and one run per checkpoint interval;
  - every run completed all its steps and colossus-launch exited 0;
  - each failure run injected every planned SIGKILL, and the coordinator restarted the
    job exactly once per kill (its "restart N of M" lines), each kill followed by a new
    generation that resumed at or before the step it was killed after;
  - both loss breakdowns have their fields, and their parts add up to wall - useful.

  goodput_smoke_test.py TRAIN_GPT COLOSSUS_LAUNCH COLOSSUS_DATA
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main(argv):
    if len(argv) != 3:
        fail("usage: goodput_smoke_test.py TRAIN_GPT COLOSSUS_LAUNCH COLOSSUS_DATA")
    with tempfile.TemporaryDirectory(prefix="colossus_goodput_smoke.") as work:
        out = os.path.join(work, "goodput.json")
        cmd = [sys.executable, os.path.join(HERE, "goodput_bench.py"), "--smoke",
               "--train-gpt", argv[0], "--launch", argv[1], "--data", argv[2],
               "--work", os.path.join(work, "runs"), "--json", out, "--timeout", "120"]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(p.stdout)
        if p.returncode != 0:
            fail("goodput_bench.py exited %d" % p.returncode)
        with open(out) as f:
            doc = json.load(f)

    cfg = doc["config"]
    runs = doc["runs"]
    names = [r["name"] for r in runs]
    expected = ["clean"] + ["ckpt%d" % i for i in cfg["intervals"]]
    if names != expected:
        fail("runs %s, expected %s" % (names, expected))
    planned = len(cfg["failure_steps"])
    if planned < 1:
        fail("no failure planned in %d steps at one every %d" % (cfg["steps"], cfg["every"]))
    fields = ["steps_completed", "failures_injected", "restarts_seen", "wall_s",
              "wall_from_launch_s", "useful_s", "goodput", "goodput_from_launch", "loss_s",
              "clean_median_step_s", "failures", "goodput_own", "useful_own_s", "loss_own_s"]
    for r in runs:
        for field in fields:
            if field not in r:
                fail("%s: no field %s" % (r["name"], field))
        if r["exit_code"] != 0:
            fail("%s: colossus-launch exited %s" % (r["name"], r["exit_code"]))
        if r["steps_completed"] != cfg["steps"]:
            fail("%s: %d steps completed of %d" % (r["name"], r["steps_completed"], cfg["steps"]))
        if not 0 < r["goodput"] < float("inf"):
            fail("%s: goodput %s is not a positive number" % (r["name"], r["goodput"]))
        if r["wall_from_launch_s"] < r["wall_s"]:
            fail("%s: wall from launch %.3f < wall from the first step %.3f"
                 % (r["name"], r["wall_from_launch_s"], r["wall_s"]))
        loss = r["loss_s"]
        for part in ("redone_steps", "redone", "restart", "checkpoint_stall", "tail", "other"):
            if part not in loss:
                fail("%s: loss breakdown has no %s" % (r["name"], part))
        parts = loss["redone"] + loss["restart"] + loss["checkpoint_stall"] + loss["tail"] + loss["other"]
        if abs(r["useful_s"] + parts - r["wall_s"]) > 1e-6:
            fail("%s: useful %.6f + losses %.6f != wall %.6f" % (r["name"], r["useful_s"], parts, r["wall_s"]))
        own = r["loss_own_s"]
        parts = sum(own[k] for k in ("redone", "restart", "partial_step", "checkpoint_stall", "tail",
                                     "between_steps"))
        if abs(r["useful_own_s"] + parts - r["wall_s"]) > 1e-6:
            fail("%s: own useful %.6f + losses %.6f != wall %.6f"
                 % (r["name"], r["useful_own_s"], parts, r["wall_s"]))
        if (own["redone"] > 0) != (loss["redone_steps"] > 0):
            fail("%s: %d steps redone but %.3f s of redone step time"
                 % (r["name"], loss["redone_steps"], own["redone"]))

    clean, failed = runs[0], runs[1:]
    if clean["failures_injected"] != 0 or clean["restarts_seen"] != 0:
        fail("clean run: %d failures, %d restarts" % (clean["failures_injected"], clean["restarts_seen"]))
    for r in failed:
        if r["failures_injected"] != planned:
            fail("%s: %d failures injected of %d planned" % (r["name"], r["failures_injected"], planned))
        if r["restarts_seen"] != planned:
            fail("%s: the coordinator restarted %d times for %d kills"
                 % (r["name"], r["restarts_seen"], planned))
        if r["generations"] != planned + 1:
            fail("%s: %d generations for %d kills" % (r["name"], r["generations"], planned))
        for i, f in enumerate(r["failures"]):
            if "resumed_at_step" not in f:
                fail("%s: kill %d: no step after it" % (r["name"], i + 1))
            if f["resumed_at_step"] > f["last_step_of_generation"] + 1:
                fail("%s: kill %d: resumed at step %d, after the last step done (%d)"
                     % (r["name"], i + 1, f["resumed_at_step"], f["last_step_of_generation"]))
            if f["resumed_at_step"] % r["interval"] != 0:
                fail("%s: kill %d: resumed at step %d, not a checkpoint step (every %d)"
                     % (r["name"], i + 1, f["resumed_at_step"], r["interval"]))
            if f["kill_to_first_step_done_s"] <= 0:
                fail("%s: kill %d: the next step finished before the kill" % (r["name"], i + 1))
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
