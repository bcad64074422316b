"""Who may reach the broker, and how many at once: the ZAP handler (ZeroMQ RFC 27) that ZeroMQ asks
about every new connection, on a thread of its own.

With keys, it admits the CURVE public keys under DIR/clients, DIR/workers and DIR/admin, each with the
role of its folder (protocol/roles.py; the server refuses a message whose kind needs more). With or
without keys, it refuses the handshake of a peer past --max-peers (peers.py). A refused peer never gets
a message to the broker; its address is logged at most once a minute.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.utils import z85

from ajq.broker.errors import BrokerConfigError
from ajq.broker.peers import MONITORED, PeerCount
from ajq.protocol.curve import KeyFileError, load_public
from ajq.protocol.roles import DIRECTORIES, Role

log = logging.getLogger("ajq.broker")
LOG_EVERY_S = 60.0  # a refused address is logged at most once a minute
MAX_LOGGED = 10_000  # refused addresses remembered for that; past it, the older ones are forgotten
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq sends ZAP requests (one handler per context)
PEERS_DOMAIN = b"ajq"  # the ROUTER's ZAP domain: its connections count against --max-peers

Reply = tuple[bytes, bytes, bytes]  # ZAP status code, status text, User-Id


@dataclass(frozen=True, slots=True)
class Peer:
    """Who sent a message, as CURVE proved it: the key's role and its public key (z85 text)."""

    role: Role
    key: str


class RefusalLog:
    """Refused addresses, each logged at most once a minute for each cause, in bounded memory."""

    def __init__(self) -> None:
        self._logged: dict[tuple[str, str], float] = {}

    def note(self, address: str, cause: str, why: str, now: float) -> None:
        """Log that `address` was refused for `cause` and why, unless it was within the minute."""
        if now - self._logged.get((address, cause), -LOG_EVERY_S) < LOG_EVERY_S:
            return
        if len(self._logged) >= MAX_LOGGED:  # strangers from many addresses cost bounded memory
            self._logged = self._recent(now)
        self._logged[address, cause] = now
        log.warning("refused a connection from %s: %s", address, why)

    def __len__(self) -> int:
        return len(self._logged)

    def _recent(self, now: float) -> dict[tuple[str, str], float]:
        """The refused addresses logged within the minute, at most the newer half of MAX_LOGGED."""
        recent = sorted((t, a) for a, t in self._logged.items() if now - t < LOG_EVERY_S)
        return {a: t for t, a in recent[-MAX_LOGGED // 2 :]}


class Gatekeeper:
    """The ZAP handler: `guard` the ROUTER before it binds, `start`, and `stop` after closing it."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], roles: dict[bytes, Role] | None, max_peers: int) -> None:
        self.ctx = ctx
        self.roles = roles  # z85 public key -> role; None: no keys, every NULL handshake may pass
        self.peers = PeerCount(max_peers)  # only the handler's thread touches it, once started
        self.refused = RefusalLog()
        self._monitor: zmq.Socket[bytes] | None = None
        self._stop: zmq.Socket[bytes] | None = None
        self._thread: threading.Thread | None = None

    def guard(self, sock: zmq.Socket[bytes]) -> None:
        """Have ZeroMQ ask us about every connection to `sock` (NULL ones too: a ZAP domain is set)
        and tell us of each connection and disconnection, to count them."""
        sock.setsockopt(zmq.ZAP_DOMAIN, PEERS_DOMAIN)
        where = f"inproc://ajq.peers.{id(self)}"
        sock.monitor(where, MONITORED)
        self._monitor = self.ctx.socket(zmq.PAIR)
        self._monitor.setsockopt(zmq.RCVHWM, 0)  # never full: libzmq's I/O thread blocks on a full monitor
        self._monitor.setsockopt(zmq.LINGER, 0)
        self._monitor.connect(where)

    def start(self) -> None:
        """Bind the ZAP endpoint and serve it on a thread, which owns its sockets from here on."""
        zap = self.ctx.socket(zmq.REP)
        zap.setsockopt(zmq.LINGER, 0)
        zap.bind(ZAP_ENDPOINT)
        where = f"inproc://ajq.zap-stop.{id(self)}"
        self._stop = self.ctx.socket(zmq.PAIR)
        self._stop.bind(where)
        stop = self.ctx.socket(zmq.PAIR)
        stop.connect(where)
        self._thread = threading.Thread(target=self._serve, args=(zap, stop), name="ajq-zap", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread (it closes its sockets) and close ours."""
        if self._thread is not None and self._stop is not None:
            self._stop.send(b"stop")
            self._thread.join()
            self._stop.close(0)
        elif self._monitor is not None:  # guarded, never started: the monitor socket is still ours
            self._monitor.close(0)
        self._thread = self._stop = self._monitor = None

    def _serve(self, zap: zmq.Socket[bytes], stop: zmq.Socket[bytes]) -> None:
        """Answer ZAP requests; count connections from the monitor's events in between."""
        poller = zmq.Poller()
        for sock in (zap, stop, self._monitor):
            if sock is not None:
                poller.register(sock, zmq.POLLIN)
        try:
            while stop not in dict(poller.poll()):
                self._count()  # before a decision too: the new connection's ACCEPTED, and every end before it
                while zap.poll(0, zmq.POLLIN):
                    request = zap.recv_multipart()
                    try:
                        code, text, user = self.decide(request, time.monotonic())
                    except Exception:  # a bug must not leave handshakes hanging: refuse, and say so
                        log.exception("the ZAP handler failed on a request; the connection is refused")
                        code, text, user = b"500", b"internal error", b""
                    zap.send_multipart([b"1.0", request[1] if len(request) > 1 else b"", code, text, user, b""])
                    self._count()
        finally:
            for sock in (zap, stop, self._monitor):
                if sock is not None:
                    sock.close(0)

    def _count(self) -> None:
        """Every monitor event waiting, into the peer count."""
        monitor = self._monitor
        while monitor is not None:
            try:
                head, _endpoint = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event, value = struct.unpack("=HI", head[:6])
            self.peers.event(event, value)

    def decide(self, request: list[bytes], now: float) -> Reply:
        """One ZAP request [version, id, domain, address, identity, mechanism, credentials...]: the key
        (with keys), then the peer bound (on the ROUTER). The User-Id is the key's role and the key."""
        if len(request) < 6 or request[0] != b"1.0":
            return b"400", b"not a ZAP 1.0 request", b""
        domain, address, mechanism = request[2], request[3].decode(errors="replace"), request[5]
        user = b""
        if mechanism == b"CURVE" and self.roles is not None and len(request) == 7:
            key = z85.encode(request[6])
            role = self.roles.get(key)
            if role is None:
                self.refused.note(address, "key", f"its key {key.decode()} is not authorized", now)
                return b"400", b"unknown key", b""
            user = role.name.encode() + b":" + key
        elif mechanism != b"NULL" or self.roles is not None:
            return b"400", b"mechanism not admitted", b""
        if domain == PEERS_DOMAIN and not self.peers.admit(now):
            why = f"{self.peers.most} peers are connected, the most --max-peers allows"
            self.refused.note(address, "peers", why, now)
            return b"400", b"too many peers", b""
        return b"200", b"OK", user


def load_roles(directory: str) -> dict[bytes, Role]:
    """z85 public key -> role, from the key files in DIR's role folders."""
    root = Path(directory)
    if not root.is_dir():
        raise BrokerConfigError(
            f"--authorized-keys {directory}: not a directory; make it with clients/, workers/, admin/"
        )
    roles: dict[bytes, Role] = {}
    for folder, role in DIRECTORIES.items():
        for path in sorted((root / folder).glob("*.key")) if (root / folder).is_dir() else []:
            try:
                roles[load_public(path)] = role  # z85 text, as the certificate file holds it
            except KeyFileError as exc:
                raise BrokerConfigError(str(exc)) from None
    stray = sorted(p.name for p in root.glob("*.key"))
    if stray:
        log.warning("keys at the top of %s are ignored (%s): put each in clients/, workers/ or admin/", root, stray)
    if not roles:
        raise BrokerConfigError(f"--authorized-keys {directory}: no NAME.key in clients/, workers/ or admin/")
    return roles


def peer_of(user_id: object) -> Peer:
    """Who ZeroMQ reported as a message's sender (the User-Id Gatekeeper.decide gave its key, ROLE:key):
    an id that is not ours gets the least role and no key."""
    role, _, key = user_id.partition(":") if isinstance(user_id, str) else ("", "", "")
    if role not in Role.__members__ or not key:
        return Peer(Role.CLIENT, "")
    return Peer(Role[role], key)
