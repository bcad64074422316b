"""The codec and its validation, without processes."""

from __future__ import annotations

import msgpack
import pytest

from ajq.protocol import ErrorCode, Kind, Limits, ProtocolError, decode, decode_value, encode, encode_value


def test_round_trip_keeps_kind_corr_and_body() -> None:
    body = {"queue": "Q", "tasks": [{"type": "t", "payload": encode_value({"a": [1, 2]}), "id": "x"}]}
    frame = decode([encode(Kind.SUBMIT, 42, body)])
    assert (frame.kind, frame.corr, frame.body) == (Kind.SUBMIT, 42, body)
    assert decode_value(frame.body["tasks"][0]["payload"]) == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xc1", ErrorCode.BAD_FRAME),
        (msgpack.packb([1, "get", -1, {"id": "x"}]), ErrorCode.BAD_FRAME),
        (msgpack.packb([1, "get", True, {"id": "x"}]), ErrorCode.BAD_FRAME),
        (msgpack.packb([1, "get", 1, {"id": "x"}, 5]), ErrorCode.BAD_FRAME),
        (msgpack.packb([2, "get", 1, {"id": "x"}]), ErrorCode.BAD_VERSION),
        (msgpack.packb([1, 7, 1, {}]), ErrorCode.UNKNOWN_KIND),
        (msgpack.packb([1, "get", 1, []]), ErrorCode.BAD_FIELD),
        (msgpack.packb([1, "get", 1, {"id": ""}]), ErrorCode.BAD_FIELD),
        (msgpack.packb([1, "get", 1, {1: "x"}]), ErrorCode.BAD_FRAME),  # map keys must be str
        (msgpack.packb([1, "wait", 1, {"id": "x", "timeout_s": -1}]), ErrorCode.BAD_FIELD),
        (msgpack.packb([1, "queue_configure", 1, {"name": "q", "max_tries": 0}]), ErrorCode.BAD_FIELD),
        (b"\xff" * 10, ErrorCode.BAD_FRAME),
    ],
)
def test_bad_frames_are_refused_with_their_code(data: bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as err:
        decode([data])
    assert err.value.code == code
    assert err.value.message


def test_limits_apply_to_frames_batches_and_payloads() -> None:
    small = Limits(max_frame_bytes=100, max_payload_bytes=10, max_batch=2)
    with pytest.raises(ProtocolError, match="over the limit") as err:
        decode([b"x" * 101], small)
    assert err.value.code == ErrorCode.TOO_LARGE
    tasks = [{"type": "t", "payload": b""}] * 3
    with pytest.raises(ProtocolError, match="split it"):
        decode([encode(Kind.SUBMIT, 1, {"queue": "q", "tasks": tasks})], small)
    with pytest.raises(ProtocolError, match="pass a reference"):
        decode([encode(Kind.SUBMIT, 1, {"queue": "q", "tasks": [{"type": "t", "payload": b"x" * 11}]})], small)


def test_values_msgpack_cannot_carry_are_named() -> None:
    with pytest.raises(TypeError, match="cannot be sent as msgpack"):
        encode_value(object())
