"""Who may reach the broker: CURVE keys checked by pyzmq's ZAP authenticator, each admitted key
given the role of the folder it sits in (protocol/roles.py), and the refusal of a message whose
kind needs more. A peer with no key or an unknown key never gets a message to the broker."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from ajq.broker.errors import BrokerConfigError
from ajq.protocol.curve import KeyFileError, load_public
from ajq.protocol.roles import DIRECTORIES, Role

log = logging.getLogger("ajq.broker")
LOG_EVERY_S = 60.0  # a refused address is logged at most once a minute
MAX_LOGGED = 10_000  # refused addresses remembered for that; past it, the older ones are forgotten


@dataclass(frozen=True, slots=True)
class Peer:
    """Who sent a message, as CURVE proved it: the key's role and its public key (z85 text)."""

    role: Role
    key: str


class Gatekeeper(ThreadAuthenticator):
    """The ZAP handler: admits the public keys under DIR/clients, DIR/workers and DIR/admin."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], directory: str) -> None:
        super().__init__(ctx, log=logging.getLogger("ajq.broker.zap"))
        self.roles = load_roles(directory)
        self._address = ""
        self._logged: dict[str, float] = {}

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode(errors="replace") if len(msg) > 3 else ""  # for the refusal log
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials provider hook: is this z85 public key one we admit?"""
        if self.roles.get(key) is None:
            self._refused(f"its key {key.decode()} is not authorized")
            return False
        return True

    def _refused(self, why: str) -> None:
        """Log a refused connection, at most once a minute per address."""
        now = time.monotonic()
        if now - self._logged.get(self._address, -LOG_EVERY_S) >= LOG_EVERY_S:
            if len(self._logged) >= MAX_LOGGED:  # strangers from many addresses cost bounded memory
                self._logged = self._recent(now)
            self._logged[self._address] = now
            log.warning("refused a connection from %s: %s", self._address, why)

    def _recent(self, now: float) -> dict[str, float]:
        """The refused addresses logged within the minute, at most the newer half of MAX_LOGGED."""
        recent = sorted((t, a) for a, t in self._logged.items() if now - t < LOG_EVERY_S)
        return {a: t for t, a in recent[-MAX_LOGGED // 2 :]}

    def curve_user_id(self, client_public_key: bytes) -> str:
        """The User-Id ZeroMQ attaches to each of the peer's messages: its role and key."""
        key = z85.encode(client_public_key)
        return f"{self.roles[key].name}:{key.decode()}"

    def start_admitting(self) -> None:
        self.start()
        self.configure_curve_callback("*", credentials_provider=self)


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
    """Who ZeroMQ reported as a message's sender (set by Gatekeeper.curve_user_id): an id that is
    not ours gets the least role and no key."""
    role, _, key = user_id.partition(":") if isinstance(user_id, str) else ("", "", "")
    if role not in Role.__members__ or not key:
        return Peer(Role.CLIENT, "")
    return Peer(Role[role], key)
