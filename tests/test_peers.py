"""The bound on connected peers (--max-peers): the count the ZAP handler keeps from the ROUTER's
monitor events, and a real broker refusing the handshake of a peer past the bound, with and without
keys; the file descriptor limit it must fit in."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from ajq import AsyncClient, Client, RequestTimeout
from ajq.broker.errors import BrokerConfigError
from ajq.broker.peers import DEFAULT_MAX_PEERS, GRANT_TTL_S, RESERVED_FDS, PeerCount, max_peers
from ajq.protocol import Kind, encode, encode_value
from ajq.protocol.curve import ClientKeys
from tests.harness import REPO, BrokerHandle, Proc, env, free_port, registered, start_broker, wait_for
from tests.test_security import _as

APP = "tests.apps.basic:router"
ACCEPTED, SUCCEEDED, DISCONNECTED = zmq.EVENT_ACCEPTED, zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_DISCONNECTED
FAILED_AUTH, NO_DETAIL = zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


# -- the count, event by event (the sequences libzmq 4.3 emits, seen on a real ROUTER) ------------


def test_peers_are_handshakes_that_succeeded_until_they_disconnect() -> None:
    count = PeerCount(most=2)
    # Given three connections at once: two admitted (their handshakes succeed), the third refused.
    for fd in (25, 26, 27):
        count.event(ACCEPTED, fd)
    assert count.admit(0.0) and count.admit(0.0)
    assert not count.admit(0.0)  # two admissions still finishing their handshakes count already
    for event, value in ((SUCCEEDED, 0), (SUCCEEDED, 0), (FAILED_AUTH, 400), (DISCONNECTED, 27)):
        count.event(event, value)
    # Then two peers, nothing in flight, and the refused one's end took nothing off.
    assert (count.peers, len(count.granted), count.failing, count.open) == (2, 0, 0, {25, 26})
    # When a connection opens and closes without a handshake (a port scan), Then nothing changes.
    for event, value in ((ACCEPTED, 21), (NO_DETAIL, 104), (DISCONNECTED, 21)):
        count.event(event, value)
    assert count.peers == 2 and not count.admit(1.0)
    # When a peer disconnects, Then one more may come.
    count.event(DISCONNECTED, 25)
    assert count.peers == 1 and count.admit(2.0)


def test_a_failure_reported_between_another_peers_end_and_its_own_settles_right() -> None:
    count = PeerCount(most=5)
    for fd in (1, 2, 3):
        count.event(ACCEPTED, fd)
    for _ in (1, 3):  # fds 1 and 3 become peers; fd 2's handshake fails
        count.admit(0.0)
        count.event(SUCCEEDED, 0)
    # When fd 2's failure comes, then fd 1's end, then fd 2's end.
    for event, value in ((NO_DETAIL, 104), (DISCONNECTED, 1), (DISCONNECTED, 2)):
        count.event(event, value)
    # Then fd 3 is the one peer left, and nothing is owed.
    assert (count.peers, count.failing, count.open) == (1, 0, {3})


def test_an_admission_whose_handshake_never_finishes_stops_counting() -> None:
    count = PeerCount(most=1)
    count.event(ACCEPTED, 7)
    assert count.admit(10.0)
    # Given the connection died between the admission and the end of its handshake.
    count.event(NO_DETAIL, 104)
    count.event(DISCONNECTED, 7)
    # Then its admission counts until GRANT_TTL_S has passed, and no longer.
    assert not count.admit(10.0 + GRANT_TTL_S / 2)
    assert count.admit(10.0 + GRANT_TTL_S + 0.1)


def test_counts_never_exceed_the_connections_open() -> None:
    count = PeerCount(most=3)
    # Given more successes reported than connections (a drift), When every connection closes,
    for fd in (1, 2):
        count.event(ACCEPTED, fd)
    for _ in range(4):
        count.event(SUCCEEDED, 0)
    for fd in (1, 2):
        count.event(DISCONNECTED, fd)
    # Then the count is back to zero: the open descriptors are exact and bound it.
    assert count.peers == 0 and count.admit(0.0)


def test_the_bound_fits_in_the_open_files_limit_or_is_refused() -> None:
    # An explicit bound that does not fit is refused, naming the flag, the limit and the fix.
    with pytest.raises(BrokerConfigError, match=r"--max-peers 5000 does not fit .* limit of 1024 open files.*768"):
        max_peers(5000, 1024)
    assert max_peers(768, 1024) == 768
    # The default is lowered to what fits; a limit with no room at all is refused.
    assert max_peers(None, 1024) == 1024 - RESERVED_FDS
    assert max_peers(None, 1 << 20) == DEFAULT_MAX_PEERS
    with pytest.raises(BrokerConfigError, match="no room for peers"):
        max_peers(None, RESERVED_FDS)


# -- a real broker ----------------------------------------------------------------------------


class Peers:
    """Raw DEALER sockets on one context, each closed at the end."""

    def __init__(self, endpoint: str, keys: ClientKeys | None = None) -> None:
        self.endpoint, self.keys = endpoint, keys
        self.ctx = zmq.Context()
        self.socks: list[zmq.Socket[bytes]] = []

    def open(self, n: int) -> list[zmq.Socket[bytes]]:
        """`n` new connections, each asking INFO (corr 1)."""
        new = []
        for _ in range(n):
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            if self.keys is not None:
                self.keys.apply(sock)
            sock.connect(self.endpoint)
            sock.send(encode(Kind.INFO, 1, {}))
            new.append(sock)
        self.socks += new
        return new

    def admitted_one(self) -> bool:
        """A new connection answered within 0.2 s (else closed again): one slot is free."""
        (sock,) = self.open(1)
        if sock.poll(200):
            return True
        self.close(sock)
        return False

    def close(self, sock: zmq.Socket[bytes]) -> None:
        self.socks.remove(sock)
        sock.close(0)

    def close_all(self) -> None:
        for sock in self.socks:
            sock.close(0)
        self.ctx.term()


def _client_keys(keys: Path, name: str) -> ClientKeys | None:
    return ClientKeys.from_files(str(keys / f"{name}.key_secret"), str(keys / "broker.key"))


def _answered(socks: list[zmq.Socket[bytes]]) -> list[zmq.Socket[bytes]]:
    return [s for s in socks if s.poll(0)]


def _check_the_bound(broker: BrokerHandle, peers: Peers, observer: Client, most: int) -> None:
    """With `observer` connected, most - 1 slots are left: the bound holds against a burst, refused
    peers change nothing, and freed slots are taken again."""
    assert observer.info()["max_batch"]  # its handshake is done: it holds its slot
    # When most + 3 peers connect at once, each asking INFO.
    burst = peers.open(most + 3)
    # Then exactly most - 1 of them are answered (the observer holds one slot), and the rest never are.
    wait_for(lambda: len(_answered(burst)) >= most - 1, 10, f"{most - 1} peers to be answered")
    refused = [s for s in burst if not s.poll(1000)]
    assert len(refused) == 4 and len(_answered(burst)) == most - 1
    # And what refused peers send reaches nothing.
    submit = encode(Kind.SUBMIT, 2, {"queue": "REFUSED", "tasks": [{"type": "t", "payload": encode_value(1)}]})
    for sock in refused:
        with contextlib.suppress(zmq.Again):  # a refused connection is gone: the socket may not even queue it
            sock.send(submit, zmq.NOBLOCK)
    assert "REFUSED" not in {q.name for q in observer.queues()}
    # When two admitted peers leave, Then two new peers are admitted, and no third.
    for sock in _answered(burst)[:2]:
        peers.close(sock)
    for _ in range(2):
        wait_for(peers.admitted_one, 10, "a freed slot to be taken")
    assert not peers.admitted_one()
    lines = broker.proc.log.read_text().splitlines()
    refusals = [line for line in lines if "refused a connection from 127.0.0.1" in line and "--max-peers" in line]
    assert len(refusals) == 1, "one line a minute per address"
    assert f"{most} peers are connected, the most --max-peers allows" in refusals[0]


@pytest.mark.timeout(60)
def test_a_broker_admits_max_peers_and_refuses_the_rest(tmp_path: Path) -> None:
    broker = start_broker(tmp_path, "--max-peers", "4")
    peers = Peers(broker.endpoint)
    observer = broker.client(timeout=5)
    try:
        _check_the_bound(broker, peers, observer, 4)
    finally:
        peers.close_all()
        broker.close()


@pytest.mark.timeout(60)
def test_the_bound_holds_with_keys_and_strangers_take_no_slot(tmp_path: Path, keys: Path) -> None:
    broker = start_broker(
        tmp_path, "--max-peers", "3", "--curve-secret", str(keys / "broker.key_secret"),
        "--authorized-keys", str(keys / "authorized"), ready=False,
    )  # fmt: skip
    peers = Peers(broker.endpoint, ClientKeys.from_files(str(keys / "app.key_secret"), str(keys / "broker.key")))
    strangers = Peers(
        broker.endpoint, ClientKeys.from_files(str(keys / "stranger.key_secret"), str(keys / "broker.key"))
    )
    try:
        broker.ready(client=lambda: Client(broker.endpoint, timeout=0.3, **_as(keys, "ops")))
        observer = Client(broker.endpoint, timeout=5, **_as(keys, "ops"))
        broker.clients.append(observer)
        # Given strangers knocking first: refused for their key, they hold no slot.
        assert not any(s.poll(500) for s in strangers.open(3))
        _check_the_bound(broker, peers, observer, 3)
    finally:
        strangers.close_all()
        peers.close_all()
        broker.close()


@pytest.mark.timeout(60)
def test_an_async_client_refused_while_the_broker_is_full_gets_in_once_a_slot_frees(tmp_path: Path) -> None:
    # Given a broker at its bound: one raw peer.
    broker = start_broker(tmp_path, "--max-peers", "1")
    peers = Peers(broker.endpoint)
    (holder,) = peers.open(1)

    async def run() -> None:
        async with AsyncClient(broker.endpoint, timeout=0.5) as c:
            # When an async client asks, Then its connection is refused: no answer.
            with pytest.raises(RequestTimeout):
                await c.queues()
            # When the raw peer leaves, Then the client's next call goes on a fresh connection, admitted.
            peers.close(holder)
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert await c.queues()
                    return
                except RequestTimeout:
                    assert time.monotonic() < deadline, "the async client never got in"

    try:
        assert holder.poll(5000)
        asyncio.run(run())
    finally:
        peers.close_all()
        broker.close()


@pytest.mark.timeout(60)
def test_a_worker_refused_while_the_broker_is_full_registers_once_a_slot_frees(tmp_path: Path) -> None:
    # Given a broker at its bound: an observer and one raw peer.
    broker = start_broker(tmp_path, "--max-peers", "2")
    peers = Peers(broker.endpoint)
    observer = broker.client(timeout=5)
    (holder,) = peers.open(1)
    worker = Proc(["-m", "ajq.worker", "--broker", broker.endpoint, APP], tmp_path / "worker.log", tmp_path)
    try:
        assert holder.poll(5000)
        # When a worker starts, Then its connection is refused and it is not registered.
        worker.start()
        wait_for(lambda: "connecting again" in worker.tail(), 10, "the worker to find itself unanswered")
        assert not registered(observer, worker.pid)
        # When the raw peer leaves, Then the worker's next fresh connection is admitted and registers.
        peers.close(holder)
        wait_for(lambda: registered(observer, worker.pid), 15, "the worker to register")
        t = observer.submit("echo", {"ok": 1})
        assert observer.wait(t.id, timeout=15).result == {"ok": 1}
    finally:
        worker.stop()
        peers.close_all()
        broker.close()


def _limited(soft: int, hard: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(60)
def test_the_broker_raises_its_open_files_limit_and_refuses_a_bound_beyond_it(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1024:
        pytest.skip("the hard limit on open files is under 1024 here")
    args = [sys.executable, "-m", "ajq.broker", "--db", str(tmp_path / "f.db"),
            "--events", f"tcp://127.0.0.1:{free_port()}"]  # fmt: skip
    # Given a hard limit of 1024 open files: a bound of 1000 cannot fit, and is refused in one line.
    run = subprocess.run(
        [*args, "--bind", f"tcp://127.0.0.1:{free_port()}", "--max-peers", "1000"], cwd=REPO, env=env(tmp_path),
        capture_output=True, text=True, timeout=30, preexec_fn=lambda: _limited(512, 1024),
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert "--max-peers 1000 does not fit" in line and "768 or less" in line
    assert not (tmp_path / "f.db").exists()
    # And a bound of 700 fits only once the soft limit of 512 is raised to the hard one: it starts.
    endpoint, log = f"tcp://127.0.0.1:{free_port()}", tmp_path / "broker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*args, "--bind", endpoint, "--max-peers", "700"], cwd=REPO, env=env(tmp_path), stdout=out,
            stderr=subprocess.STDOUT, preexec_fn=lambda: _limited(512, 1024),
        )  # fmt: skip
    try:
        with Client(endpoint, timeout=10) as c:
            assert c.queues(), log.read_text()
    finally:
        proc.terminate()
        proc.wait(10)
