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
_ENVELOPE_BYTES = 128  # fixarray + version + a kind of <= 64 chars + corr, with room


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
    """Decode one message (the frames after any routing identity); raise ProtocolError if bad.

    It is decoded under limits that bound what any frame can cost in memory (SPEC 2)."""
    if len(frames) != 1:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"a message is exactly one frame, got {len(frames)}")
    data = frames[0]
    if len(data) > limits.max_frame_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"frame of {len(data)} bytes is over the limit of {limits.max_frame_bytes}"
            f"{limits.named('max_frame_bytes')}: split it, or pass references to large data",
        )
    msg = _unpack(data, limits)
    if type(msg) is not list or len(msg) != 4:
        raise ProtocolError(ErrorCode.BAD_FRAME, "a message is a msgpack array [version, kind, corr, body]")
    version, kind_name, corr, body = msg
    if type(version) is not int or version != VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION, f"protocol version {version!r} is not spoken here; use {VERSION}")
    if not _is_corr(corr):
        raise ProtocolError(ErrorCode.BAD_FRAME, "the correlation id must be an integer from 0 to 2**63-1")
    kind = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"unknown message kind {kind_name!r}")
    if validate:
        check_body(kind, body, limits)
    return Frame(kind, corr, body)


def _is_corr(corr: Any) -> bool:
    return type(corr) is int and 0 <= corr < 2**63


def _envelope(data: bytes | memoryview) -> tuple[Any, Any, Any]:
    """[version, kind, corr] of a frame, read without a byte of its body (for refused frames).

    Only scalars are allowed here (a kind name of at most 64 characters), so a hostile envelope
    costs a few bytes however it is built."""
    unpacker = msgpack.Unpacker(
        raw=False, max_buffer_size=max(len(data), 1), max_str_len=64, max_bin_len=0,
        max_array_len=0, max_map_len=0, max_ext_len=0,
    )  # fmt: skip
    try:
        unpacker.feed(data)
        if unpacker.read_array_header() != 4:
            raise ValueError("not four items")
        version, kind_name, corr = unpacker.unpack(), unpacker.unpack(), unpacker.unpack()
    except Exception:  # msgpack raises several unrelated types on garbage and on the limits
        raise ProtocolError(ErrorCode.BAD_FRAME, "a message is a msgpack array [version, kind, corr, body]") from None
    return version, kind_name, corr


class _ContainerBudget:
    """Counts the maps and lists a body decodes into and stops past the budget: a container costs
    ~60 bytes of memory for one byte of frame, so their number, not the frame size, bounds memory."""

    __slots__ = ("left",)

    def __init__(self, budget: int) -> None:
        self.left = budget

    def __call__(self, value: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise ValueError("too many maps and lists")
        return value


def _unpack(data: bytes, limits: Limits) -> Any:
    budget = _ContainerBudget(limits.max_containers)
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=True, object_hook=budget, list_hook=budget,
            max_array_len=limits.max_items, max_map_len=limits.max_items,
        )  # fmt: skip
    except msgpack.StackError:
        raise ProtocolError(ErrorCode.TOO_LARGE, "the message is nested too deeply") from None
    except Exception as exc:
        if budget.left < 0:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"the message holds more than {limits.max_containers} maps and lists: split it"
            ) from None
        if type(exc) is ValueError and "exceeds max_" in str(exc):  # msgpack's own length limits
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"a list or map in the message has more than {limits.max_items} items: split it"
            ) from None
        raise ProtocolError(ErrorCode.BAD_FRAME, f"frame is not valid msgpack ({type(exc).__name__})") from None


def peek_kind(data: bytes) -> tuple[Kind | None, int]:
    """The kind (None: unknown or unreadable) and corr of a frame, from its envelope alone."""
    try:
        _, kind_name, corr = _envelope(memoryview(data)[:_ENVELOPE_BYTES])
    except ProtocolError:
        return None, 0
    kind = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
    return kind, corr if _is_corr(corr) else 0


def peek_corr(data: bytes) -> int:
    """Best-effort correlation id of a refused frame, so its error reply can be matched.

    Reads the envelope's first bytes only, however large the frame is."""
    try:
        corr = _envelope(memoryview(data)[:_ENVELOPE_BYTES])[2]
    except ProtocolError:
        return 0
    return corr if _is_corr(corr) else 0


def encode_value(value: Any) -> bytes:
    """Encode a payload or result; raise TypeError naming what msgpack cannot carry."""
    try:
        data: bytes = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"value cannot be sent as msgpack: {exc}; use dicts, lists, str, bytes, numbers") from None
    return data


def decode_value(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
