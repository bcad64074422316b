"""Size limits every peer enforces on what it receives; the broker announces its own in WELCOME."""

from __future__ import annotations

from dataclasses import dataclass

MAX_FRAME_BYTES = 8 * 1024 * 1024  # one encoded message; larger ones get a TOO_LARGE error
HARD_FRAME_BYTES = 64 * 1024 * 1024  # above this, ZeroMQ drops the connection before we read it
MAX_PAYLOAD_BYTES = 1024 * 1024  # one task's encoded payload or result
MAX_BATCH = 10_000  # tasks in one SUBMIT, leases in one RESULTS
MAX_NAME_CHARS = 200  # queue names and task types
MAX_WORKER_PROCS = 4096  # processes one worker may announce in HELLO
MAX_PREFETCH_PER_PROC = 64  # tasks a worker may hold ready per process, beyond the one it runs
MAX_ERROR_CHARS = 8_000  # stored error text; longer text is cut, not refused
CUT_MARK = "\n...(cut)"
# The lease bound (SPEC 6.1): a worker's children stop by themselves when their supervisor has had no
# answer from the broker for `lease_bound_s`; the broker takes a silent worker's tasks back only after
# the bound plus this margin, which covers the kill's own latency and the two hosts' clock rates.
LEASE_MARGIN_S = 1.0
BEATS_PER_BOUND = 3  # default lease bound, in heartbeats


@dataclass(frozen=True)
class Limits:
    """The limits in force for one connection."""

    max_frame_bytes: int = MAX_FRAME_BYTES
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_batch: int = MAX_BATCH

    @property
    def max_containers(self) -> int:
        """Maps and lists one frame may decode into: a full batch with a nested map or list per item."""
        return 4 * self.max_batch + 64

    @property
    def max_items(self) -> int:
        """Items of any one list or map; the batch limit itself is checked with its own message."""
        return 2 * self.max_batch + 16


def max_credit(procs: int) -> int:
    """The most tasks a worker of `procs` processes may hold (leased) or ask for (credit) at once."""
    return procs * (1 + MAX_PREFETCH_PER_PROC)


def cut_error(text: str) -> str:
    """`text` within MAX_ERROR_CHARS, marked where it was cut (worker and broker cut alike)."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return text[: MAX_ERROR_CHARS - len(CUT_MARK)] + CUT_MARK
