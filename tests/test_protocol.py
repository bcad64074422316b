"""The codec and its validation, without processes."""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ajq.protocol import ErrorCode, Kind, Limits, ProtocolError, decode, decode_value, encode, encode_value
from ajq.protocol.codec import peek_corr
from ajq.protocol.messages import _plain_task, check_body, check_item


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


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        (Kind.SUBMIT, {"queue": "a\x00b", "tasks": [{"type": "t", "payload": b"\xc0"}]}, "queue"),
        (Kind.SUBMIT, {"queue": "q", "tasks": [{"type": "t\nINFO forged log line", "payload": b"\xc0"}]}, "type"),
        (Kind.HELLO, {"worker_id": "w\x1b[2J", "host": "h", "pid": 1, "procs": 1, "queues": ["q"]}, "worker_id"),
        (Kind.HELLO, {"worker_id": "w", "host": "h\r", "pid": 1, "procs": 1, "queues": ["q"]}, "host"),
        (Kind.HELLO, {"worker_id": "w", "host": "h", "pid": 1, "procs": 1, "queues": ["q\t"]}, "queues"),
    ],
)
def test_names_types_and_hosts_with_control_characters_are_refused(kind: Kind, body: dict, field: str) -> None:
    # A NUL would make two queue/type pairs share a unique lock; a newline or escape would forge log lines.
    with pytest.raises(ProtocolError, match=f"'{field}'.*printable") as err:
        decode([encode(kind, 1, body)])
    assert err.value.code == ErrorCode.BAD_FIELD
    assert decode([encode(Kind.GET, 1, {"id": "a name with spaces and ünïcödé"})]).body["id"]


def test_a_hello_bounds_the_host_it_announces() -> None:
    # The broker keeps each worker's host for as long as it is registered: a megabyte each would add up.
    hello = {"worker_id": "w", "host": "h" * 256, "pid": 1, "procs": 1, "queues": ["q"]}
    with pytest.raises(ProtocolError, match="'host' must be at most 255 printable characters") as err:
        decode([encode(Kind.HELLO, 1, hello)])
    assert err.value.code == ErrorCode.BAD_FIELD
    assert decode([encode(Kind.HELLO, 1, {**hello, "host": "h" * 255})]).body["host"] == "h" * 255


def test_values_msgpack_cannot_carry_are_named() -> None:
    with pytest.raises(TypeError, match="cannot be sent as msgpack"):
        encode_value(object())


def _peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes Python allocated while `fn` ran."""
    tracemalloc.start()
    try:
        with contextlib.suppress(ProtocolError):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _submit_prefix(corr: int) -> bytes:
    """The bytes of [1, "submit", corr, {"tasks": ...}] up to the tasks list itself."""
    return b"\x94\x01\xa6submit" + msgpack.packb(corr) + b"\x81\xa5tasks"


@pytest.mark.parametrize(
    "hostile",
    [
        b"\xdd" + (8_000_000).to_bytes(4, "big") + b"\x80" * 8_000_000,  # one list of 8 million empty maps
        b"\xdc\x03\x20" + (b"\xdc\x27\x10" + b"\x80" * 10_000) * 800,  # 800 lists of 10,000: each list is legal
        b"\x91" * 100_000 + b"\xc0",  # nested 100,000 deep
    ],
    ids=["flat", "nested-lists", "deep"],
)
def test_a_hostile_frame_costs_little_memory_and_gets_too_large(hostile: bytes) -> None:
    data = _submit_prefix(9) + hostile
    assert len(data) < Limits().max_frame_bytes
    with pytest.raises(ProtocolError) as err:
        decode([data])
    assert err.value.code == ErrorCode.TOO_LARGE
    assert _peak_bytes(lambda: decode([data])) < 16 * 1024 * 1024  # unbounded: 578 MB for "flat"


def test_the_corr_of_an_oversized_frame_is_read_without_its_body() -> None:
    data = _submit_prefix(77) + b"\xdd" + (9_000_000).to_bytes(4, "big") + b"\x80" * 9_000_000
    with pytest.raises(ProtocolError) as err:
        decode([data])
    assert err.value.code == ErrorCode.TOO_LARGE
    assert peek_corr(data) == 77
    assert _peak_bytes(lambda: peek_corr(data)) < 64 * 1024
    assert peek_corr(b"\x94\x01\xda" + b"\xff\xff" + b"k" * 70_000) == 0  # a kind name too long to be one


def test_a_batch_past_the_limit_is_named_before_its_items_are_checked() -> None:
    small = Limits(max_batch=2)
    tasks = [{"type": "t", "payload": b""}] * 3
    with pytest.raises(ProtocolError, match="split it") as err:
        decode([encode(Kind.SUBMIT, 1, {"queue": "q", "tasks": tasks})], small)
    assert err.value.code == ErrorCode.TOO_LARGE
    many = [{"type": "t", "payload": b""}] * 100  # past msgpack's per-list limit, not only the batch's
    with pytest.raises(ProtocolError, match="more than 20 items") as err:
        decode([encode(Kind.SUBMIT, 1, {"queue": "q", "tasks": many})], small)
    assert err.value.code == ErrorCode.TOO_LARGE


@settings(max_examples=400, deadline=None)
@given(
    name=st.one_of(st.text(max_size=210), st.binary(max_size=4), st.integers(), st.none()),
    payload=st.one_of(st.binary(max_size=40), st.text(max_size=4), st.integers(), st.none()),
    extra=st.sampled_from([{}, {"id": "x"}, {"deadline": 1.0}]),
)
def test_the_fast_check_of_a_plain_task_accepts_only_what_the_full_check_accepts(
    name: object, payload: object, extra: dict[str, object]
) -> None:
    # Given any task of the common shape, right or wrong (a tight payload limit makes size count too).
    limits = Limits(max_payload_bytes=16)
    item = {"type": name, "payload": payload, **extra}
    # When both checks judge it, Then they agree: the fast one never lets through what the full one refuses.
    try:
        check_item(Kind.SUBMIT, "tasks", 0, item, limits)
        full = True
    except ProtocolError:
        full = False
    if _plain_task(item, limits.max_payload_bytes):
        assert full
    # And check_body, which uses the fast one, refuses exactly what the full one does.
    body = {"queue": "q", "tasks": [item]}
    try:
        check_body(Kind.SUBMIT, body, limits)
        assert full
    except ProtocolError:
        assert not full
