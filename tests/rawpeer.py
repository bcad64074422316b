"""A raw DEALER socket speaking (or breaking) the protocol by hand, for fault tests."""

from __future__ import annotations

import time
from typing import Any

import zmq

from ajq.protocol import Frame, Kind, decode, encode


class RawPeer:
    def __init__(self, endpoint: str, routing_id: bytes | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if routing_id is not None:
            self.sock.setsockopt(zmq.ROUTING_ID, routing_id)
        self.sock.connect(endpoint)

    def send_frames(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def send(self, kind: Kind, body: dict[str, Any], corr: int = 0) -> None:
        self.sock.send(encode(kind, corr, body))

    def recv(
        self, timeout: float = 5.0, skip: tuple[Kind, ...] = (Kind.HEARTBEAT,), beat_s: float | None = None
    ) -> Frame:
        """The next message not of a kind in `skip`; with `beat_s`, heartbeat while waiting like a worker."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no message within {timeout}s")
            if beat_s is not None:
                self.send(Kind.HEARTBEAT, {})
            if not self.sock.poll(int(min(left, beat_s or left) * 1000) + 1):
                continue
            frame = decode(self.sock.recv_multipart(), validate=False)
            if frame.kind not in skip:
                return frame

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
