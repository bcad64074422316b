"""Size limits every peer enforces on what it receives; the broker announces its own in WELCOME and INFO.

The frame, payload and batch limits are the broker's to set (ajbroker --max-frame-mb, --max-payload-kb,
--max-batch), within the hard bounds below; the values here are their defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

KIB = 1024
MIB = 1024 * 1024
MAX_FRAME_BYTES = 8 * MIB  # one encoded message; larger ones get a TOO_LARGE error
HARD_FRAME_BYTES = 64 * MIB  # above this, ZeroMQ drops the connection before we read it; frame limits stay under it
MAX_PAYLOAD_BYTES = MIB  # one task's encoded payload or result; at most half the frame limit
MAX_BATCH = 10_000  # tasks in one SUBMIT, leases in one RESULTS
HARD_BATCH = 100_000  # the most --max-batch may be: a frame's decode budget and a step's rows grow with it
MAX_NAME_CHARS = 200  # queue names and task types
MAX_HOST_CHARS = 255  # a worker's host name in HELLO (DNS names are at most 253)
MAX_WORKER_PROCS = 4096  # processes one worker may announce in HELLO
MAX_PREFETCH_PER_PROC = 64  # tasks a worker may hold ready per process, beyond the one it runs
MAX_ERROR_CHARS = 8_000  # stored error text; longer text is cut, not refused
CUT_MARK = "\n...(cut)"
# The lease bound (SPEC 6.1): a worker's children stop by themselves when their supervisor has had no
# answer from the broker for `lease_bound_s`; the broker takes a silent worker's tasks back only after
# the bound plus this margin, which covers the kill's own latency and the two hosts' clock rates.
LEASE_MARGIN_S = 1.0
BEATS_PER_BOUND = 3  # default lease bound, in heartbeats


# The ajbroker flag that sets each limit, and the unit it is given in.
FLAGS = {"max_frame_bytes": ("--max-frame-mb", MIB), "max_payload_bytes": ("--max-payload-kb", KIB),
         "max_batch": ("--max-batch", 1)}  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """The limits in force for one connection."""

    max_frame_bytes: int = MAX_FRAME_BYTES
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_batch: int = MAX_BATCH
    set_by: str = ""  # "ajbroker": its refusals name the flag that sets the limit

    def named(self, limit: str) -> str:
        """' (ajbroker --max-batch 10)' after a refusal of `limit`, so the reader knows what sets it; ''
        for a peer's own limits."""
        if not self.set_by:
            return ""
        flag, unit = FLAGS[limit]
        return f" ({self.set_by} {flag} {getattr(self, limit) // unit})"

    @classmethod
    def announced(cls, data: Mapping[str, object]) -> Limits:
        """The limits a broker announced (a welcome, an INFO reply); one it did not name, or named out
        of the hard bounds, is the default (an older broker announces fewer)."""
        frame = _within(data.get("max_frame_bytes"), 1, HARD_FRAME_BYTES - 1, MAX_FRAME_BYTES)
        payload = _within(data.get("max_payload_bytes"), 1, frame // 2, min(MAX_PAYLOAD_BYTES, frame // 2))
        return cls(frame, payload, _within(data.get("max_batch"), 1, HARD_BATCH, MAX_BATCH))

    @property
    def max_containers(self) -> int:
        """Maps and lists one frame may decode into: a full batch with a nested map or list per item."""
        return 4 * self.max_batch + 64

    @property
    def max_items(self) -> int:
        """Items of any one list or map; the batch limit itself is checked with its own message."""
        return 2 * self.max_batch + 16


# What a peer accepts from the broker: the broker's own limits may be anything within the hard bounds,
# and a delivery can arrive in the same read as the welcome that announces them.
HARD_LIMITS = Limits(max_frame_bytes=HARD_FRAME_BYTES, max_payload_bytes=HARD_FRAME_BYTES // 2, max_batch=HARD_BATCH)


def _within(value: object, low: int, high: int, default: int) -> int:
    """`value` if it is a whole number from `low` to `high`, else `default`."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return default


def max_credit(procs: int) -> int:
    """The most tasks a worker of `procs` processes may hold (leased) or ask for (credit) at once."""
    return procs * (1 + MAX_PREFETCH_PER_PROC)


def cut_error(text: str) -> str:
    """`text` within MAX_ERROR_CHARS, marked where it was cut (worker and broker cut alike)."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return text[: MAX_ERROR_CHARS - len(CUT_MARK)] + CUT_MARK
