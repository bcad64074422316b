"""The broker's one poll loop: read every waiting message, step, commit, then send.

Signals only set a flag (through a wakeup socket, so the poll returns at once); the loop acts.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Callable
from typing import cast

import zmq

from ajq.broker import peers
from ajq.broker.access import Gatekeeper, Peer, load_roles, peer_of
from ajq.broker.config import BrokerConfig
from ajq.broker.core import Broker
from ajq.broker.errors import BrokerConfigError
from ajq.broker.store import Store
from ajq.protocol import ErrorCode, Kind, encode
from ajq.protocol.clock import Clock, SteadyClock
from ajq.protocol.codec import peek_kind
from ajq.protocol.curve import KeyFileError, KeyPair, load_secret
from ajq.protocol.limits import HARD_FRAME_BYTES
from ajq.protocol.roles import Role, refusal

log = logging.getLogger("ajq.broker")


class Server:
    """ROUTER socket + store + Broker. `run()` until SIGTERM/SIGINT or `stop()`."""

    def __init__(self, config: BrokerConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SteadyClock()
        max_peers = peers.max_peers(config.max_peers, peers.open_files_limit())  # refused before any file is made
        roles = self._load_keys(config)
        self.store = Store(config.db, config.synchronous, config.max_db_mb)
        self.broker = Broker(self.store, config, self.clock.now())
        self.ctx = zmq.Context()
        self.gatekeeper = Gatekeeper(self.ctx, roles, max_peers)
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unknown peer raises instead of dropping
        self._routing_ids(self.sock)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.setsockopt(zmq.RCVHWM, 100_000)
        self.sock.setsockopt(zmq.MAXMSGSIZE, HARD_FRAME_BYTES)
        self._curve_server(self.sock)
        self.gatekeeper.guard(self.sock)  # every handshake goes through the ZAP handler, counted
        self.gatekeeper.start()
        self.sock.bind(config.bind)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.pub = self.ctx.socket(zmq.XPUB)  # XPUB: we see subscriptions, so no subscriber costs nothing
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 10_000)  # a slow subscriber loses events; the broker never waits
        self._curve_server(self.pub)
        self.pub.bind(config.events_endpoint)
        self.broker.events_endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = False
        self._carry: list[list[bytes]] = []  # messages read but left by the step's row bound
        self._peers: dict[bytes, Peer] = {}  # with keys: who sent each message read and not yet stepped

    def _load_keys(self, config: BrokerConfig) -> dict[bytes, Role] | None:
        """With keys configured: our pair (in `_keys`), and the admitted public keys with their roles."""
        self._keys: KeyPair | None = None
        if not config.curve_secret or not config.authorized_keys:
            return None
        try:
            self._keys = load_secret(config.curve_secret)
        except KeyFileError as exc:
            raise BrokerConfigError(str(exc)) from None
        return load_roles(config.authorized_keys)

    def _routing_ids(self, sock: zmq.Socket[bytes]) -> None:
        """Without keys, a worker that reconnects takes its routing id back at once (handover): every
        peer is this host's. With keys, a routing id stays with the connection that holds it, since
        handover would let any admitted key take a worker's id, or guess a client's (ZeroMQ makes
        them by counting), and receive its messages; ZMTP heartbeats free the id of a dead
        connection within seconds instead, so the owner can connect again."""
        if self._keys is None:
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            return
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(self.config.heartbeat_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.config.lease_bound_s * 1000))

    def _curve_server(self, sock: zmq.Socket[bytes]) -> None:
        if self._keys is not None:
            sock.curve_secretkey = self._keys.secret
            sock.curve_publickey = self._keys.public
            sock.curve_server = True

    def stop(self, *_: object) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self, on_ready: Callable[[str], None] | None = None) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.pub, zmq.POLLIN)
        wake = self._wake_r.fileno()
        poller.register(wake, zmq.POLLIN)
        if on_ready:
            on_ready(self.endpoint)
        try:
            while not self._stopping:
                timeout_ms = 0.0 if self._carry else self.broker.wake_in(self.clock.now()) * 1000
                ready = dict(poller.poll(max(0, int(timeout_ms + 0.999))))
                if wake in ready:
                    self._drain_wakeup()
                if self.pub in ready:
                    self._count_subscribers()
                self.turn()
        finally:
            self.close()

    def turn(self) -> None:
        """One iteration: every message waiting (up to a cap), one transaction, all the sends."""
        inbox = iter(self.read_inbox())
        out = self.broker.step(inbox, self.clock.now(), self._peers)  # the clock is read after the messages
        self._carry = list(inbox)  # what the step's row bound left for the next turn
        if not self._carry and self._peers:
            self._peers = {}
        send = self.sock.send_multipart
        for msg in out:
            try:
                send([msg.ident, msg.data], zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # EHOSTUNREACH: peer gone; EAGAIN: peer not reading
                log.debug("cannot send to %r: %s", msg.ident, exc)
                self.broker.undeliverable(msg)
        for event in self.broker.events.take():
            with contextlib.suppress(zmq.Again):
                self.pub.send_multipart([b"task", event], zmq.NOBLOCK)

    def read_inbox(self) -> list[list[bytes]]:
        """What the last step left, then the messages waiting, up to the step's cap in messages and
        in bytes (one message always)."""
        inbox, self._carry = self._carry, []
        recv = self._recv_checked if self._keys is not None else self.sock.recv_multipart
        left = self.config.max_step_bytes - sum(len(part) for msg in inbox for part in msg)
        sock = self.sock
        # EVENTS says whether a message waits: cheaper than a recv that raises Again to say there is none.
        while len(inbox) < self.config.max_batch_messages and left > 0 and _waiting(sock):
            try:
                msg = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if msg:
                inbox.append(msg)
                left -= sum(len(part) for part in msg)
        return inbox

    def _recv_checked(self, flags: int) -> list[bytes]:
        """One message from an admitted key; one its role may not send is answered FORBIDDEN here
        and never reaches the step (an empty list)."""
        frames = self.sock.recv_multipart(flags, copy=False)
        msg = [f.bytes for f in frames]
        peer = peer_of(frames[-1].get("User-Id")) if len(frames) > 1 else Peer(Role.CLIENT, "")
        kind, corr = peek_kind(msg[-1]) if len(msg) == 2 else (None, 0)
        problem = refusal(peer.role, kind) if kind is not None else None
        if problem is None:
            self._peers[msg[0]] = peer
            return msg
        error = encode(Kind.ERROR, corr, {"code": int(ErrorCode.FORBIDDEN), "message": problem})
        with contextlib.suppress(zmq.ZMQError):
            self.sock.send_multipart([msg[0], error], zmq.NOBLOCK)
        return []

    def _count_subscribers(self) -> None:
        """XPUB hands us each subscription change: first byte 1 to join, 0 to leave."""
        while _waiting(self.pub):
            try:
                note = self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if note[:1] == b"\x01":
                self.broker.events.subscribers += 1
            elif note[:1] == b"\x00":
                self.broker.events.subscribers -= 1

    def _drain_wakeup(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        self.sock.close(0)
        self.pub.close(0)
        self.gatekeeper.stop()
        self.ctx.term()
        self.store.close()
        self._wake_r.close()
        self._wake_w.close()


def _waiting(sock: zmq.Socket[bytes]) -> bool:
    """A message waits on `sock` (its EVENTS flags: no system call, no exception)."""
    return bool(cast(int, sock.get(zmq.EVENTS)) & zmq.POLLIN)
