"""A client process for the broker-kill test: submits COUNT tasks with ids NAME-0.. in batches,
resending a batch under the same ids until it is acknowledged, and writes each acknowledged batch
to OUT (one id per line) only after the broker's reply.

    python -m tests.faults.submitter ENDPOINT NAME COUNT BATCH OUT
"""

from __future__ import annotations

import sys

from ajq import Client, ClientError, DuplicateTask


def main(endpoint: str, name: str, count: int, batch: int, out: str) -> int:
    with Client(endpoint, timeout=1.0) as c, open(out, "a") as acked:
        for first in range(0, count, batch):
            ids = [f"{name}-{i}" for i in range(first, min(count, first + batch))]
            tasks = [{"type": "work", "payload": {"i": i}, "id": i} for i in ids]
            while True:
                try:
                    c.submit_many(tasks, queue="BURST")
                    break
                except DuplicateTask:
                    break  # an earlier send was committed and its reply lost: a batch commits whole
                except ClientError:
                    continue  # timed out or refused while the broker was down: the same ids again
            acked.write("".join(f"{i}\n" for i in ids))
            acked.flush()
    return 0


if __name__ == "__main__":
    endpoint, name, count, batch, out = sys.argv[1:]
    sys.exit(main(endpoint, name, int(count), int(batch), out))
