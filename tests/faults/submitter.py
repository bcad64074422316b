"""A client process for the broker-kill test: submits COUNT tasks with ids NAME-0.. in batches,
resending a batch under the same ids until it is acknowledged, and writes each acknowledged batch
to OUT (one id per line) only after the broker's reply. Started again after a kill, it skips the
batches OUT holds and resends the one it was killed in.

    python -m tests.faults.submitter ENDPOINT NAME COUNT BATCH OUT [QUEUE [WORK_S [BATCHES_PER_S]]]

With BATCHES_PER_S it paces itself (load for a soak of a given length); without, as fast as it can.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ajq import Client, ClientError, DuplicateTask


def main(
    endpoint: str, name: str, count: int, batch: int, out: str, queue: str = "BURST", work_s: float = 0.0,
    rate: float = 0.0,
) -> int:  # fmt: skip
    start = time.monotonic()
    done = set(Path(out).read_text().split()) if Path(out).exists() else set()  # acked before a restart
    sent = 0
    with Client(endpoint, timeout=1.0) as c, open(out, "a") as acked:
        for first in range(0, count, batch):
            ids = [f"{name}-{i}" for i in range(first, min(count, first + batch))]
            if done.issuperset(ids):
                continue
            if rate > 0:
                time.sleep(max(0.0, start + sent / rate - time.monotonic()))  # pacing the load, not waiting on it
            sent += 1
            tasks = [{"type": "work", "payload": {"i": i, "s": work_s}, "id": i} for i in ids]
            while True:
                try:
                    c.submit_many(tasks, queue=queue)
                    break
                except DuplicateTask:
                    break  # an earlier send was committed and its reply lost: a batch commits whole
                except ClientError:
                    continue  # timed out or refused while the broker was down: the same ids again
            acked.write("".join(f"{i}\n" for i in ids))
            acked.flush()
    return 0


if __name__ == "__main__":
    endpoint, name, count, batch, out, *rest = sys.argv[1:]
    queue = rest[0] if rest else "BURST"
    work_s = float(rest[1]) if len(rest) > 1 else 0.0
    rate = float(rest[2]) if len(rest) > 2 else 0.0
    sys.exit(main(endpoint, name, int(count), int(batch), out, queue, work_s, rate))
