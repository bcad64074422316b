"""Task signatures (asyncjobs' idea): a client signs each task with an ed25519 key (PyNaCl), and a
worker started with the matching verify key runs only tasks whose signature holds. What is signed
is the task's id, queue, type and payload, so none of them can be changed on the way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgpack
from nacl.encoding import HexEncoder
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

SIGNATURE_BYTES = 64


class SigningKeyError(ValueError):
    """A signing or verify key file is missing or malformed; the message names the file and the fix."""


def signed_bytes(task_id: str, queue: str, task_type: str, payload: bytes) -> bytes:
    """The exact bytes a task's signature covers."""
    data: bytes = msgpack.packb(["ajq-task-1", task_id, queue, task_type, payload], use_bin_type=True)
    return data


def make_signing_keys(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write NAME.sign (secret, mode 600: for clients) and NAME.verify (for workers); never overwrite."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    secret, public = target / f"{name}.sign", target / f"{name}.verify"
    if secret.exists():
        raise SigningKeyError(f"{secret} exists already: pick another name or remove it first")
    key = SigningKey.generate()
    secret.write_bytes(key.encode(HexEncoder) + b"\n")
    os.chmod(secret, 0o600)
    public.write_bytes(key.verify_key.encode(HexEncoder) + b"\n")
    return public, secret


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    return SigningKey(_hex(path, "NAME.sign"), encoder=HexEncoder)


def load_verify_key(path: str | os.PathLike[str]) -> VerifyKey:
    return VerifyKey(_hex(path, "NAME.verify"), encoder=HexEncoder)


def _hex(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        data = Path(path).read_bytes().strip()
        if len(data) != 64:
            raise ValueError("not 64 hex digits")
        bytes.fromhex(data.decode())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise SigningKeyError(
            f"cannot read the key file {path}: {exc}; give the {what} file `ajc keygen --signing` wrote"
        ) from None
    return data


def sign(key: SigningKey, task_id: str, queue: str, task_type: str, payload: bytes) -> bytes:
    return bytes(key.sign(signed_bytes(task_id, queue, task_type, payload)).signature)


def refusal(key: VerifyKey, item: dict[str, Any]) -> str | None:
    """Why a delivered task may not run under `key` (None: its signature holds)."""
    signature = item.get("signature")
    if not isinstance(signature, bytes):
        return "the task is not signed, and this worker runs only signed tasks (--verify-key)"
    try:
        key.verify(signed_bytes(item["id"], item["queue"], item["type"], item["payload"]), signature)
    except BadSignatureError:
        return (
            "the task's signature does not match this worker's --verify-key: it was changed, or signed by another key"
        )
    return None
