"""The bound on connected peers (--max-peers), and the file descriptors it needs.

A ROUTER cannot close one connection, so a peer past the bound is refused at its handshake: the ZAP
handler (access.py) asks `PeerCount.admit` about every new connection, and counts connections from
the ROUTER's monitor events. It runs per connection, never per message.
"""

from __future__ import annotations

import logging
import resource
from collections import deque

import zmq

from ajq.broker.errors import BrokerConfigError

log = logging.getLogger("ajq.broker")

DEFAULT_MAX_PEERS = 10_000
# File descriptors kept for the broker's own use beside its peers: ZeroMQ's mailboxes and poller, the
# database, its WAL and shared memory, the log, and the events socket's subscribers (not bounded here).
RESERVED_FDS = 256
GRANT_TTL_S = 2.0  # an admission not seen to finish its handshake by then no longer counts
FAILED = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
MONITORED = zmq.EVENT_ACCEPTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | FAILED | zmq.EVENT_DISCONNECTED


class PeerCount:
    """Peers of the ROUTER: connections whose handshake succeeded and that have not disconnected, plus
    admissions whose handshake is finishing. Touched only on the ZAP handler's thread.

    libzmq names the file descriptor in ACCEPTED and DISCONNECTED only, so a DISCONNECTED is matched
    by count: each connection ends with one, after either one HANDSHAKE_SUCCEEDED (a peer) or one
    HANDSHAKE_FAILED_* (never a peer; the failure comes first). The open descriptors, exact, bound
    both counts, so any drift is undone as connections close.
    """

    def __init__(self, most: int) -> None:
        self.most = most
        self.open: set[int] = set()  # descriptors accepted and not disconnected: peers and handshakes
        self.peers = 0  # handshakes that succeeded, not disconnected yet
        self.failing = 0  # handshakes that failed, not disconnected yet
        self.granted: deque[float] = deque()  # admissions (monotonic time) whose handshake has not finished

    def event(self, event: int, value: int) -> None:
        """One monitor event of the ROUTER (`value`: the descriptor, for ACCEPTED and DISCONNECTED)."""
        if event == zmq.EVENT_ACCEPTED:
            self.open.add(value)
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.peers += 1
            if self.granted:
                self.granted.popleft()
        elif event & FAILED:
            self.failing += 1
        elif event == zmq.EVENT_DISCONNECTED:
            self.open.discard(value)
            if self.failing:
                self.failing -= 1
            elif self.peers:
                self.peers -= 1
        self.peers = min(self.peers, len(self.open))
        self.failing = min(self.failing, len(self.open))

    def admit(self, now: float) -> bool:
        """May one more peer connect? If so it counts from now on."""
        while self.granted and now - self.granted[0] > GRANT_TTL_S:
            self.granted.popleft()
        if self.peers + len(self.granted) >= self.most:
            return False
        self.granted.append(now)
        return True


def open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (refused: keep it); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # macOS caps the soft limit below an unlimited hard one
            log.debug("cannot raise the open files limit from %d to %d", soft, hard)
    return soft if soft != resource.RLIM_INFINITY else 2**31 - 1


def max_peers(asked: int | None, open_files: int) -> int:
    """The peer bound in force: `asked` if it fits in `open_files` (else BrokerConfigError), or the
    default, lowered to what fits (and said so)."""
    room = open_files - RESERVED_FDS
    fix = "raise the hard limit (`ulimit -Hn` as root, LimitNOFILE= in a systemd unit)"
    if asked is not None and asked > room:
        raise BrokerConfigError(
            f"--max-peers {asked} does not fit in this process's limit of {open_files} open files, less "
            f"{RESERVED_FDS} kept for the broker's own: give --max-peers {max(room, 0)} or less, or {fix}"
        )
    if room < 1:
        raise BrokerConfigError(f"a limit of {open_files} open files leaves no room for peers: {fix}")
    if asked is not None:
        return asked
    if room < DEFAULT_MAX_PEERS:
        log.warning(
            "at most %d peers may connect (not %d): the limit of %d open files allows no more; %s, or set "
            "--max-peers to silence this", room, DEFAULT_MAX_PEERS, open_files, fix,
        )  # fmt: skip
    return min(room, DEFAULT_MAX_PEERS)
