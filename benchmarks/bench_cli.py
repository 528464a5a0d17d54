"""How fast the ``mpimpy`` command answers, side by side with a bare Python start.

Each command runs ``--repeat`` times, the commands taking turns (so a busy spell of this shared
machine hits all of them alike), on a scratch store holding one experiment of 20 runs, so that
``study list`` reads a real MLflow store. Printed per command: the median and best wall time,
the median CPU time (user + system, less sensitive to other load), the ratio of its median wall
time to a bare ``python -c pass`` and to ``python -c "import torch"`` measured in the same run,
and the target of issue 14 (on an idle machine: ``--help`` < 0.5 s, ``study list`` and
``study validate`` < 3 s), judged on the best run, the least disturbed by other load.

Run: ``.venv/bin/python benchmarks/bench_cli.py [--repeat 5]`` (or ``make bench-cli``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MPIMPY = Path(PYTHON).with_name("mpimpy")
MPIMPY_CMD = [str(MPIMPY)] if MPIMPY.is_file() else [PYTHON, "-m", "mpimpy"]

COMMANDS = {
    "python -c pass": ([PYTHON, "-c", "pass"], None),
    "python -c 'import torch'": ([PYTHON, "-c", "import torch"], None),
    "mpimpy --help": ([*MPIMPY_CMD, "--help"], 0.5),
    "mpimpy study list": ([*MPIMPY_CMD, "study", "list"], 3.0),
    "mpimpy study validate quickstart": ([*MPIMPY_CMD, "study", "validate", "quickstart"], 3.0),
    "mpimpy study run quickstart --dry-run": (
        [*MPIMPY_CMD, "study", "run", "quickstart", "--dry-run"], None),
}


def make_store(folder: Path) -> None:
    """A local store with one experiment of 20 finished runs."""
    sys.path.insert(0, str(ROOT))
    from mpimpy import tracking

    client = tracking.get_client(f"sqlite:///{folder / 'mlflow.db'}")
    experiment_id = tracking.ensure_experiment("bench", client=client)
    for i in range(20):
        run = client.create_run(experiment_id, tags={"study": "bench"})
        client.log_param(run.info.run_id, "var", i / 100)
        client.log_metric(run.info.run_id, "RE", 0.1)
        client.set_terminated(run.info.run_id)


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``command``."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {proc.stderr.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        make_store(store)
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env["MPIMPY_STORE"] = str(store)
        walls = {name: [] for name in COMMANDS}
        cpus = {name: [] for name in COMMANDS}
        for command, _ in COMMANDS.values():  # warm the file cache once
            timed(command, env)
        for _ in range(args.repeat):
            for name, (command, _) in COMMANDS.items():
                wall, cpu = timed(command, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
    bare = statistics.median(walls["python -c pass"])
    torch_s = statistics.median(walls["python -c 'import torch'"])
    print(f"{args.repeat} runs each, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} "
          f"CPUs; times in seconds")
    print(f"{'command':40} {'median':>7} {'best':>6} {'cpu':>6} {'/python':>8} {'/torch':>7}"
          f"  target (best run)")
    for name, (_, target) in COMMANDS.items():
        median, best = statistics.median(walls[name]), min(walls[name])
        verdict = "" if target is None else (
            f"< {target:g}: {'met' if best < target else 'missed'}")
        print(f"{name:40} {median:7.2f} {best:6.2f} "
              f"{statistics.median(cpus[name]):6.2f} {median / bare:8.1f} "
              f"{median / torch_s:7.2f}  {verdict}")


if __name__ == "__main__":
    main()
