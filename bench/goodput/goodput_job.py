"""One colossus-launch job of train_gpt workers, observed and (optionally) attacked.

run_job() writes a manifest, starts colossus-launch, and while the job runs:
  - tails rank 0's metrics.jsonl (one JSON line per completed step, flushed by the
    trainer) every POLL_S seconds and stamps each new line with the time it was seen;
  - reads the launcher's output (its own events and rank 0's lines) on a thread and
    stamps each line the same way;
  - at each planned failure step, SIGKILLs one worker (found in /proc by the run
    directory, rank and generation in its environment).
It returns what it saw as plain data (goodput_analysis.py turns it into figures).

Times are time.monotonic() seconds. A line is stamped when this process reads it, so
each stamp is late by at most POLL_S plus the writer's own buffering (the trainer
flushes every line; the launcher writes whole lines).
"""

import json
import os
import resource
import signal
import subprocess
import threading
import time

POLL_S = 0.01


def _environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def find_worker(train_gpt, run_dir, rank):
    """The pid of the newest generation's train_gpt process of `rank` in this run, or None."""
    best = None
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.readlink("/proc/%d/exe" % pid) != train_gpt:
                continue
        except OSError:
            continue
        env = _environ(pid)
        if env is None or env.get("COLOSSUS_RUN_DIR") != run_dir or env.get("RANK") != str(rank):
            continue
        gen = int(env.get("COLOSSUS_GENERATION", "0"))
        if best is None or gen > best[0]:
            best = (gen, pid)
    return None if best is None else best[1]


def _machine_busy_s():
    """Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def write_manifest(path, name, run_dir, worker_cmd, workers, max_restarts, backoff_s):
    # JSON is YAML: every string quoted, no escaping surprises in paths.
    manifest = {
        "version": 1,
        "job": {"name": name, "run_dir": run_dir},
        "nodes": [{"host": "localhost", "gpus": 0, "workers": workers}],
        "worker": {"command": worker_cmd, "log": "rank0"},
        "restart": {"max_restarts": max_restarts, "backoff": "%gs" % backoff_s},
        "health": {"heartbeat_interval": "500ms", "node_timeout": "10s", "hang_timeout": "60s"},
    }
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)


class _LineReader(threading.Thread):
    """Reads a pipe line by line, stamping each line when it arrives; copies it to a file."""

    def __init__(self, pipe, copy_path):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.copy_path = copy_path
        self.lines = []  # (time, text)
        self.lock = threading.Lock()

    def run(self):
        with open(self.copy_path, "w") as copy:
            for raw in iter(self.pipe.readline, b""):
                now = time.monotonic()
                text = raw.decode(errors="replace").rstrip("\n")
                with self.lock:
                    self.lines.append((now, text))
                copy.write(text + "\n")
                copy.flush()


class _MetricsTail:
    """New complete lines of a JSON-lines file that is appended to by another process."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = b""

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        *complete, self.partial = data.split(b"\n")
        out = []
        for line in complete:
            if line.strip():
                out.append(json.loads(line))
        return out


def run_job(*, name, run_dir, train_gpt, launch, worker_args, workers, fail_at_steps,
            fail_ranks, max_restarts, backoff_s, timeout_s):
    """Runs one job to its end. fail_at_steps: ascending step indices; when rank 0 has
    completed a step >= fail_at_steps[i] (in the generation now running), the worker of
    rank fail_ranks[i] is killed with SIGKILL. Returns a dict of raw observations."""
    os.makedirs(run_dir, exist_ok=True)
    out_dir = os.path.join(run_dir, "out")
    manifest = os.path.join(run_dir, "job.yaml")
    write_manifest(manifest, name, run_dir, [train_gpt] + worker_args + ["--out", out_dir],
                   workers, max_restarts, backoff_s)

    busy0, cpu0 = _machine_busy_s(), _children_cpu_s()
    t_launch = time.monotonic()
    proc = subprocess.Popen([launch, manifest, "--no-status"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    reader = _LineReader(proc.stdout, os.path.join(run_dir, "launch.txt"))
    reader.start()
    tail = _MetricsTail(os.path.join(out_dir, "metrics.jsonl"))

    # Step lines, each with the time it was seen and the generation index (0, 1, ...)
    # inferred from elapsed_s: a new generation's training loop starts its clock at 0.
    steps = []
    checkpoints = []  # checkpoint lines (stall per save)
    kills = []        # {time, rank, pid, planned_step, last_step_seen}
    gen_index = 0
    last_elapsed = -1.0
    next_failure = 0
    deadline = t_launch + timeout_s
    rc = None
    while True:
        now = time.monotonic()
        for rec in tail.poll():
            if "step_ms" in rec:
                if rec["elapsed_s"] < last_elapsed:
                    gen_index += 1
                last_elapsed = rec["elapsed_s"]
                steps.append({"t": now, "gen": gen_index, "step": rec["step"],
                              "step_ms": rec["step_ms"], "elapsed_s": rec["elapsed_s"]})
            elif "checkpoint_stall_s" in rec:
                checkpoints.append({"t": now, "gen": gen_index, "step": rec["checkpoint_step"],
                                    "stall_s": rec["checkpoint_stall_s"]})
        if (next_failure < len(fail_at_steps) and steps and steps[-1]["gen"] == gen_index
                and steps[-1]["step"] >= fail_at_steps[next_failure]
                and (not kills or gen_index > kills[-1]["gen"])):
            rank = fail_ranks[next_failure]
            pid = find_worker(train_gpt, run_dir, rank)
            if pid is not None:
                t_kill = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                kills.append({"t": t_kill, "rank": rank, "pid": pid, "gen": gen_index,
                              "planned_step": fail_at_steps[next_failure],
                              "last_step_seen": steps[-1]["step"]})
                next_failure += 1
        rc = proc.poll()
        if rc is not None:
            break
        if now > deadline:
            proc.send_signal(signal.SIGINT)
            rc = proc.wait()
            break
        time.sleep(POLL_S)
    t_end = time.monotonic()
    reader.join(timeout=5)
    for rec in tail.poll():  # lines written just before the end
        if "step_ms" in rec:
            if rec["elapsed_s"] < last_elapsed:
                gen_index += 1
            last_elapsed = rec["elapsed_s"]
            steps.append({"t": t_end, "gen": gen_index, "step": rec["step"],
                          "step_ms": rec["step_ms"], "elapsed_s": rec["elapsed_s"]})
        elif "checkpoint_stall_s" in rec:
            checkpoints.append({"t": t_end, "gen": gen_index, "step": rec["checkpoint_step"],
                                "stall_s": rec["checkpoint_stall_s"]})
    busy1, cpu1 = _machine_busy_s(), _children_cpu_s()
    with reader.lock:
        lines = list(reader.lines)
    return {
        "name": name,
        "run_dir": run_dir,
        "exit_code": rc,
        "timed_out": t_end > deadline,
        "t_launch": t_launch,
        "t_end": t_end,
        "steps": steps,
        "checkpoints": checkpoints,
        "kills": kills,
        "failures_planned": len(fail_at_steps),
        "launcher_lines": lines,
        # Cores that other processes kept busy during the run (the machine is shared).
        "foreign_load": max(0.0, ((busy1 - busy0) - (cpu1 - cpu0)) / max(t_end - t_launch, 1e-9)),
        "job_cpu_s": cpu1 - cpu0,
    }
