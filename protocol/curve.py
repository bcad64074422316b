"""CURVE keys (ZeroMQ's own authentication and encryption) as every ajq peer loads and applies them.

Keys are ZeroMQ certificate files, made by `ajc keygen NAME` (zmq.auth.create_certificates):
NAME.key holds the public key, NAME.key_secret both. A client, worker or `ajc` needs its own
secret file and the broker's public file; the broker its secret file and a directory of the
public keys it admits (section "Security" of the README)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

SECRET_ENV = "AJQ_CURVE_SECRET"
SERVER_ENV = "AJQ_CURVE_SERVER"


class KeyFileError(ValueError):
    """A key file is missing or is not a ZeroMQ certificate; the message names the file and the fix."""


@dataclass(frozen=True)
class KeyPair:
    public: bytes
    secret: bytes


def load_secret(path: str | os.PathLike[str]) -> KeyPair:
    """Our own key pair, from a NAME.key_secret file."""
    public, secret = _load(path)
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key: give the NAME.key_secret file `ajc keygen NAME` wrote")
    return KeyPair(public, secret)


def load_public(path: str | os.PathLike[str]) -> bytes:
    """A peer's public key, from its NAME.key (or NAME.key_secret) file."""
    return _load(path)[0]


def _load(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(os.fspath(path))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc}; make keys with `ajc keygen NAME`") from None
    return public, secret


@dataclass(frozen=True)
class ClientKeys:
    """What a connecting peer needs: its own pair and the broker's public key."""

    own: KeyPair
    server: bytes

    @classmethod
    def from_files(cls, secret: str | None, server: str | None) -> ClientKeys | None:
        """From the given files, else $AJQ_CURVE_SECRET / $AJQ_CURVE_SERVER; None when neither is set."""
        secret = secret or os.environ.get(SECRET_ENV)
        server = server or os.environ.get(SERVER_ENV)
        if not secret and not server:
            return None
        if not secret or not server:
            raise KeyFileError(
                "CURVE needs both our secret key and the broker's public key: give --curve-secret NAME.key_secret "
                f"and --curve-server broker.key (or {SECRET_ENV} and {SERVER_ENV})"
            )
        return cls(load_secret(secret), load_public(server))

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Make `sock` a CURVE client of the broker (before it connects)."""
        sock.curve_secretkey = self.own.secret
        sock.curve_publickey = self.own.public
        sock.curve_serverkey = self.server


def make_keys(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write NAME.key and NAME.key_secret in `directory`; refuse to overwrite a secret."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    if (target / f"{name}.key_secret").exists():
        raise KeyFileError(f"{target / (name + '.key_secret')} exists already: pick another name or remove it first")
    public, secret = zmq.auth.create_certificates(os.fspath(target), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)
