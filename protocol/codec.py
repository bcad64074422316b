"""Encoding and strict decoding of frames: [version, kind, correlation id, body] in msgpack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from ajq.protocol.errors import ErrorCode, ProtocolError
from ajq.protocol.limits import Limits
from ajq.protocol.messages import Kind, check_body

VERSION = 1
_KINDS = {k.value: k for k in Kind}
_DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded message. `corr` pairs a reply with its request (0: none expected)."""

    kind: Kind
    corr: int
    body: dict[str, Any]


def encode(kind: Kind, corr: int, body: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb([VERSION, kind.value, corr, body], use_bin_type=True)
    return data


def decode(frames: list[bytes], limits: Limits = _DEFAULT_LIMITS, validate: bool = True) -> Frame:
    """Decode one message (the frames after any routing identity); raise ProtocolError if bad."""
    if len(frames) != 1:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"a message is exactly one frame, got {len(frames)}")
    data = frames[0]
    if len(data) > limits.max_frame_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"frame of {len(data)} bytes is over the limit of {limits.max_frame_bytes}"
        )
    try:
        msg = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(ErrorCode.BAD_FRAME, f"frame is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(msg, list) or len(msg) != 4:
        raise ProtocolError(ErrorCode.BAD_FRAME, "a message is a msgpack array [version, kind, corr, body]")
    version, kind_name, corr, body = msg
    if type(version) is not int or version != VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION, f"protocol version {version!r} is not spoken here; use {VERSION}")
    if not isinstance(corr, int) or isinstance(corr, bool) or corr < 0 or corr >= 2**63:
        raise ProtocolError(ErrorCode.BAD_FRAME, "the correlation id must be an integer from 0 to 2**63-1")
    kind = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"unknown message kind {kind_name!r}")
    if validate:
        check_body(kind, body, limits)
    return Frame(kind, corr, body)


def peek_corr(data: bytes) -> int:
    """Best-effort correlation id of an undecodable frame, so its error reply can be matched."""
    try:
        msg = msgpack.unpackb(data, raw=False)
        corr = msg[2]
        return corr if isinstance(corr, int) and not isinstance(corr, bool) and 0 <= corr < 2**63 else 0
    except Exception:
        return 0


def encode_value(value: Any) -> bytes:
    """Encode a payload or result; raise TypeError naming what msgpack cannot carry."""
    try:
        data: bytes = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"value cannot be sent as msgpack: {exc}; use dicts, lists, str, bytes, numbers") from None
    return data


def decode_value(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
