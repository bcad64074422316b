"""The supervisor's link to the broker: one DEALER socket, registration, heartbeats both ways,
and the requests that still await an answer (Paranoid Pirate, from the zguide).

HELLO is sent until the broker welcomes us, and again whenever the broker is silent for three
heartbeats or says it does not know us; unanswered that long, it goes on a fresh connection (a broker
refuses a handshake past its --max-peers, and ZeroMQ never retries a refused one by itself).
Heartbeats carry a corr, and the broker's answer to one (or
the welcome) confirms contact as of the moment we sent it: `contact` is what the lease bound counts
from (SPEC 6.1). Nothing here decides what to do with a message; the requests that await an answer
are outbox.py's. Every time here is the supervisor loop's monotonic `now`, passed in.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import socket
from typing import Any

import zmq

from ajq.protocol import Frame, Kind, ProtocolError, decode, encode
from ajq.protocol.curve import ClientKeys, KeyFileError
from ajq.protocol.limits import BEATS_PER_BOUND, HARD_LIMITS, Limits
from ajq.worker.config import WorkerConfig
from ajq.worker.errors import WorkerConfigError

log = logging.getLogger("ajq.worker")


class BrokerLink:
    def __init__(self, config: WorkerConfig, worker_id: str) -> None:
        self.config = config
        self.worker_id = worker_id
        self.registered = False
        self.heartbeat_s = config.heartbeat_s  # until the welcome says otherwise
        self._warned: set[str] = set()  # unused queues named in a warning already
        try:
            self.keys = ClientKeys.from_files(config.curve_secret, config.curve_server)
        except KeyFileError as exc:
            raise WorkerConfigError(str(exc)) from None
        self.lease_bound_s = BEATS_PER_BOUND * config.heartbeat_s  # likewise
        self.lease_grace_s = 0.0  # likewise
        self.limits = Limits()  # the broker's frame, payload and batch limits, as its welcome announces them
        self.contact = -math.inf  # monotonic: when we sent the latest message the broker answered as ours
        self._beats: dict[int, float] = {}  # heartbeat corr -> monotonic sent at, until answered
        self._hello_sent = 0.0
        self.hello_corr = 0
        self._corr = itertools.count(1)
        self._next_hello = 0.0
        self._next_beat = 0.0
        self._last_heard = -math.inf  # monotonic: set by receive, so always before a welcome
        self._connected: float | None = None  # monotonic: when the socket last (re)connected; None: not yet
        self._reconnects = 0  # fresh connections made without an answer since the last one

    def connect(self) -> zmq.Socket[bytes]:
        """Open the socket (after the pool is forked: no child inherits a live context)."""
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, self.worker_id.encode())
        self.sock.setsockopt(zmq.LINGER, 0)
        if self.keys is not None:
            self.keys.apply(self.sock)
        self.sock.connect(self.config.broker)
        return self.sock

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()

    def next_corr(self) -> int:
        return next(self._corr)

    def send(self, kind: Kind, body: dict[str, Any], corr: int = 0) -> bool:
        """Send without blocking; False if the socket's queue is full (the message is dropped)."""
        try:
            self.sock.send(encode(kind, corr, body), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def receive(self, now: float) -> list[Frame]:
        """Every message waiting on the socket; an unreadable one is logged and dropped."""
        frames: list[Frame] = []
        while True:
            try:
                raw = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return frames
            self._last_heard = now
            self._reconnects = 0
            try:
                frames.append(decode(raw, HARD_LIMITS))  # the broker's own limits may be anything within these
            except ProtocolError as exc:
                log.error("unreadable message from the broker, ignored: %s", exc)

    def welcome(self, data: dict[str, Any]) -> None:
        """Registered: adopt the broker's heartbeat and lease bound; contact holds as of the HELLO."""
        self.registered = True
        self.heartbeat_s = float(data["heartbeat_s"])
        self.lease_bound_s = float(data.get("lease_bound_s", BEATS_PER_BOUND * self.heartbeat_s))
        self.lease_grace_s = float(data.get("lease_grace_s", 0.0))
        self.limits = Limits.announced(data)
        self.contact = max(self.contact, self._hello_sent)
        log.info("registered with the broker at %s", self.config.broker)
        for name in data.get("unused_queues", ()):
            if name not in self._warned:
                self._warned.add(name)
                log.warning(
                    "queue %r has never been configured, submitted or scheduled to: if that name is a typo, "
                    "fix --queue; tasks sent to any other queue will not reach this worker", name,
                )  # fmt: skip

    def confirmed(self, corr: int) -> bool:
        """A REPLY: if it answers one of our heartbeats, contact holds as of when we sent it."""
        sent = self._beats.pop(corr, None)
        if sent is None:
            return False
        self.contact = max(self.contact, sent)
        return True

    def in_contact(self, now: float) -> bool:
        """Within the lease bound of the last confirmed contact: our leases still hold."""
        return now < self.contact + self.lease_bound_s

    def forget_registration(self) -> None:
        """The broker does not know us (it restarted, or dropped us): say HELLO again now."""
        self.registered = False
        self._next_hello = 0.0

    def keep_in_touch(self, now: float, may_register: bool) -> None:
        """HELLO until welcomed; heartbeats; a broker silent for 3 beats gets a new HELLO."""
        if self.registered and now - self._last_heard > 3 * self.heartbeat_s:
            log.warning("broker silent for %.1fs: registering again", now - self._last_heard)
            self.forget_registration()
        if self._connected is None:
            self._connected = now  # the first turn after connect()
        if not self.registered and min(now - self._last_heard, now - self._connected) > 3 * self.heartbeat_s:
            self._reconnect(now)
        if not self.registered and may_register and now >= self._next_hello:
            self.hello_corr = self.next_corr()
            self._hello_sent = now
            self.send(Kind.HELLO, self._hello_body(), self.hello_corr)
            self._next_hello = now + self.heartbeat_s
        if self.registered and now >= self._next_beat:
            corr = self.next_corr()
            self._beats = {c: t for c, t in self._beats.items() if now - t < self.lease_bound_s}  # older: useless
            self._beats[corr] = now
            self.send(Kind.HEARTBEAT, {}, corr)
            self._next_beat = now + self.heartbeat_s

    def _reconnect(self, now: float) -> None:
        """The broker has not answered for 3 heartbeats: drop the connection (and what waits in it) and
        make a new one. A refused handshake ends a connection for good; a new one is asked again."""
        if self._reconnects == 0:
            log.warning(
                "no answer from the broker at %s for %.1fs: connecting again (a broker at its --max-peers, or "
                "one that does not admit our key, refuses the connection without a word)", self.config.broker,
                min(now - self._last_heard, now - (self._connected or now)),
            )  # fmt: skip
        self._reconnects += 1
        with contextlib.suppress(zmq.ZMQError):
            self.sock.disconnect(self.config.broker)
        self.sock.connect(self.config.broker)
        self._connected = now
        self._next_hello = now

    def next_timer(self, now: float, may_register: bool) -> float:
        """When keep_in_touch next has something to do (never in the past when it has nothing)."""
        if self.registered:
            return self._next_beat
        return self._next_hello if may_register else now + self.heartbeat_s

    def _hello_body(self) -> dict[str, Any]:
        """Who we are and what we serve: queues with their weights, strict priority or not."""
        return {
            "worker_id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "procs": self.config.procs,
            "queues": list(self.config.queues),
            "weights": list(self.config.weights),
            "strict": self.config.strict,
        }
