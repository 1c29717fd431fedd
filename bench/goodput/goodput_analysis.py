"""Figures from what goodput_job.run_job() observed.

Definitions (bench/goodput/README.md says the same):
  useful   = steps completed x the clean run's median step time
  wall     = from the start of the job's first step (its first metrics line's arrival
             minus its own step time) to colossus-launch's exit; wall_launch counts from
             the moment colossus-launch was started
  goodput  = useful / wall (and useful / wall_launch)
The loss, wall - useful, is broken down into
  redone   = steps the killed generation completed past the checkpoint it was resumed
             from (they are trained again) x the clean median step time
  restart  = per failure, from SIGKILL to the start of the first step completed after it
             (detection, new generation, worker start-up, rendezvous, checkpoint load)
  stall    = the checkpoint saves' stall of the training loop (rank 0's metrics)
  tail     = from the last step to colossus-launch's exit (final save, weights, teardown)
  other    = the rest: step times above the clean median, the step cut short by each
             kill, and the observation's own delays (at most one poll period per line)
The same with the run's own step times (goodput_own; the load of a shared machine may
change between the clean run and this one, which moves the first figure but not this):
  useful_own = the step times (rank 0's step_ms) of the last execution of each step
  loss_own   = redone (the step times of the executions that were redone), restart,
               partial_step (from the last step done before each kill to the kill),
               checkpoint_stall, tail, and between_steps: the rest (time outside step_ms
               between steps: metrics, status file, the checkpoint call's own overhead)
"""

import re
import statistics

WARMUP_STEPS = 10  # excluded from the clean median (allocation, first-touch, caches)


def clean_median_step_s(job):
    times = [s["step_ms"] for s in job["steps"] if s["step"] >= WARMUP_STEPS]
    if not times:
        times = [s["step_ms"] for s in job["steps"]]
    return statistics.median(times) / 1e3 if times else float("nan")


def _first_after(lines, t0, t1, pattern):
    """Time of the first launcher line in [t0, t1] matching pattern, or None."""
    rx = re.compile(pattern)
    for t, text in lines:
        if t0 <= t <= t1 and rx.search(text):
            return t
    return None


def _restart_lines(lines):
    rx = re.compile(r"restart (\d+) of (\d+)")
    seen = set()
    for _, text in lines:
        m = rx.search(text)
        if m:
            seen.add(int(m.group(1)))
    return len(seen)


def _first_step_start(step):
    return step["t"] - step["step_ms"] / 1e3


def analyse(job, median_s):
    """Per-run figures as a JSON-ready dict; median_s: the clean run's median step time."""
    steps = job["steps"]
    lines = job["launcher_lines"]
    out = {
        "name": job["name"],
        "exit_code": job["exit_code"],
        "timed_out": job["timed_out"],
        "foreign_load_cores": round(job["foreign_load"], 3),
    }
    if not steps:
        out["error"] = "no step was ever completed"
        return out
    completed = steps[-1]["step"] + 1
    t_first = _first_step_start(steps[0])
    t_last = steps[-1]["t"]
    wall = job["t_end"] - t_first
    wall_launch = job["t_end"] - job["t_launch"]
    useful = completed * median_s

    failures = []
    for k in job["kills"]:
        g = k["gen"]
        old = [s for s in steps if s["gen"] == g]
        new = [s for s in steps if s["gen"] == g + 1]
        f = {"rank": k["rank"], "planned_step": k["planned_step"],
             "killed_after_step": k["last_step_seen"]}
        if old:
            f["last_step_of_generation"] = old[-1]["step"]
        if new:
            first = new[0]
            t_next = _first_step_start(first)
            f["resumed_at_step"] = first["step"]
            f["redone_steps"] = max(0, (old[-1]["step"] + 1 if old else 0) - first["step"])
            f["kill_to_first_step_done_s"] = first["t"] - k["t"]
            f["kill_to_next_step_start_s"] = t_next - k["t"]
            # Where the restart time goes, from the launcher's own lines (None: not seen).
            # The patterns are anchored: a failure's reason repeats the killed rank's last
            # output lines, which may hold an earlier "resumed from step".
            marks = {
                "failure_reported_s": _first_after(lines, k["t"], t_next, r"^\[colossus\] rank \d+ .*failed"),
                "generation_formed_s": _first_after(lines, k["t"], t_next, r"^\[colossus\] generation \d+ formed"),
                "workers_started_s": _first_after(lines, k["t"], t_next, r"^\[agent [^]]*\] started \d+ worker"),
                "worker_first_line_s": _first_after(lines, k["t"], t_next, r"^\[rank \d+\] colossus: "),
                "resumed_s": _first_after(lines, k["t"], first["t"], r"^\[rank \d+\] colossus: resumed from step"),
            }
            f["marks_after_kill"] = {key: (None if t is None else round(t - k["t"], 3))
                                     for key, t in marks.items()}
        failures.append(f)

    redone_steps = sum(f.get("redone_steps", 0) for f in failures)
    redone = redone_steps * median_s
    restart = sum(f.get("kill_to_next_step_start_s", 0.0) for f in failures)
    stall = sum(c["stall_s"] for c in job["checkpoints"])
    tail = job["t_end"] - t_last
    other = wall - useful - redone - restart - stall - tail
    own = [s["step_ms"] for s in steps if s["step"] >= WARMUP_STEPS]
    own_median = statistics.median(own) / 1e3 if own else float("nan")

    # The same accounting with this run's own step times: immune to the load on a shared
    # machine changing between the clean run and this one. A step's last execution is
    # the one that counts; earlier ones were redone.
    last_run = {s["step"]: i for i, s in enumerate(steps)}
    useful_own = sum(steps[i]["step_ms"] for i in last_run.values()) / 1e3
    redone_own = sum(s["step_ms"] for i, s in enumerate(steps) if last_run[s["step"]] != i) / 1e3
    partial = 0.0  # from the last step completed before each kill to the kill
    for k in job["kills"]:
        before = [s["t"] for s in steps if s["gen"] == k["gen"] and s["t"] <= k["t"]]
        if before:
            partial += k["t"] - before[-1]
    gaps = wall - useful_own - redone_own - restart - partial - stall - tail

    out.update({
        "steps_completed": completed,
        "steps_run": len(steps),
        "failures_injected": len(job["kills"]),
        "failures_planned": job["failures_planned"],
        "restarts_seen": _restart_lines(lines),
        "generations": steps[-1]["gen"] + 1,
        "checkpoints_saved": len(job["checkpoints"]),
        "wall_s": wall,
        "wall_from_launch_s": wall_launch,
        "startup_s": t_first - job["t_launch"],
        "useful_s": useful,
        "goodput": useful / wall,
        "goodput_from_launch": useful / wall_launch,
        "median_step_s": own_median,
        "loss_s": {
            "redone_steps": redone_steps,
            "redone": redone,
            "restart": restart,
            "checkpoint_stall": stall,
            "tail": tail,
            "other": other,
        },
        "useful_own_s": useful_own,
        "goodput_own": useful_own / wall,
        "loss_own_s": {
            "redone": redone_own,
            "restart": restart,
            "partial_step": partial,
            "checkpoint_stall": stall,
            "tail": tail,
            "between_steps": gaps,
        },
        "failures": failures,
    })
    return out


def mean_or_none(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None
