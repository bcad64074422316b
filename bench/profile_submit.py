"""`python -m bench.profile_submit`: where the broker's time goes on single submits, with py-spy.

One client submits one task per call for `--seconds` while py-spy samples the broker (a real
`ajbroker`, temp SQLite file, no worker). Prints the broker's CPU and wall time per submit and the
functions that take the most of its samples, inclusive and self, with and without idle samples
(py-spy's --idle: time blocked in a system call, fsync and the socket poll included). Needs py-spy
(pip install -e '.[peers]') and the right to ptrace the broker (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from bench.procs import Cluster

QUEUE = "profile"
FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def submit_for(cluster: Cluster, seconds: float, counts: list[int]) -> None:
    """Submit one no-op per call until `seconds` pass; the count goes to counts[0]."""
    with cluster.client() as c:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            c.submit("noop", None, queue=QUEUE)
            counts[0] += 1


def frame_name(frame: str) -> str:
    """`fn (path/to/file.py:123)` as `file.py:fn`, so lines of one function add up."""
    m = FRAME.match(frame)
    if not m:
        return frame
    return f"{Path(m['file']).name}:{m['fn']}"


def read_raw(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """py-spy's raw (collapsed) stacks: samples per function, inclusive and self; total samples."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        total += int(n)
        for f in set(frames):
            inclusive[f] += int(n)
        own[frames[-1]] += int(n)
    return inclusive, own, total


def show(title: str, path: Path, top: int) -> None:
    inclusive, own, total = read_raw(path)
    print(f"\n{title}: {total} samples")
    print(f"  {'inclusive':>9}  {'self':>6}  function")
    for fn, n in inclusive.most_common(top):
        print(f"  {100 * n / total:8.1f}%  {100 * own[fn] / total:5.1f}%  {fn}")
    print("  top self: " + ", ".join(f"{fn} {100 * n / total:.1f}%" for fn, n in own.most_common(8)))


def profile(synchronous: str, seconds: float, top: int, out: Path) -> None:
    with Cluster(broker_args=("--synchronous", synchronous)) as cluster:
        with cluster.client() as c:
            c.configure_queue(QUEUE)
        broker = cluster.procs[0].popen.pid
        proc = psutil.Process(broker)
        submit_for(cluster, 1.0, [0])  # warm: the first submits create the queue's rows
        for idle in (False, True):
            raw = out / f"broker-{synchronous.lower()}{'-idle' if idle else ''}.txt"
            cmd = ["py-spy", "record", "--pid", str(broker), "--rate", "500", "--duration", str(int(seconds)),
                   "--format", "raw", "--output", str(raw), *(["--idle"] if idle else [])]  # fmt: skip
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            counts = [0]
            cpu0, t0 = sum(proc.cpu_times()[:2]), time.perf_counter()
            worker = threading.Thread(target=submit_for, args=(cluster, seconds, counts))
            worker.start()
            worker.join()
            cpu, wall = sum(proc.cpu_times()[:2]) - cpu0, time.perf_counter() - t0
            _, err = spy.communicate(timeout=seconds + 30)
            if spy.returncode != 0:
                raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")
            n = counts[0]
            print(f"\n== synchronous={synchronous}, py-spy {'--idle' if idle else '(no idle)'}: {n} submits in "
                  f"{wall:.1f} s = {n / wall:,.0f}/s; per submit {1e6 * wall / n:,.0f} us wall, broker CPU "
                  f"{1e6 * cpu / n:,.0f} us ({100 * cpu / wall:.0f} % of one core)")  # fmt: skip
            show(f"broker samples{' incl. idle' if idle else ''}", raw, top)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_submit", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="how long each profile submits (default 15)")
    p.add_argument("--synchronous", default="FULL,NORMAL", help="broker --synchronous values (default FULL,NORMAL)")
    p.add_argument("--top", type=int, default=25, help="functions to list (default 25)")
    p.add_argument("--out", type=Path, default=Path("bench/results/profile"), help="where py-spy's raw files go")
    args = p.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy not found: pip install py-spy (or -e '.[peers]')", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for mode in args.synchronous.split(","):
        profile(mode.strip().upper(), args.seconds, args.top, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
