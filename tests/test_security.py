"""CURVE keys and roles, against a real broker: only admitted keys get anything, each within its
role; without keys the broker listens on this host only unless told --insecure."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq
from zmq.utils import z85

from ajq import Client, Forbidden, RequestTimeout
from ajq.broker.access import MAX_LOGGED, PEERS_DOMAIN, Gatekeeper, load_roles
from ajq.client.cli import main as ajc
from ajq.protocol.curve import load_public, load_secret
from tests.harness import BrokerHandle, Proc, free_port, start_broker, start_worker

APP = "tests.apps.basic:router"


def _curve_broker(tmp_path: Path, keys: Path) -> BrokerHandle:
    handle = start_broker(
        tmp_path, "--curve-secret", str(keys / "broker.key_secret"), "--authorized-keys", str(keys / "authorized"),
        ready=False,
    )  # fmt: skip
    handle.ready(client=lambda: Client(handle.endpoint, timeout=0.3, **_as(keys, "ops")))
    return handle


def _as(keys: Path, name: str) -> dict[str, str]:
    return {"curve_secret": str(keys / f"{name}.key_secret"), "curve_server": str(keys / "broker.key")}


def test_keygen_writes_a_public_and_a_secret_file_and_never_overwrites(keys: Path) -> None:
    assert (keys / "app.key").read_text().count("public-key") == 1
    assert "secret-key" in (keys / "app.key_secret").read_text()
    assert (keys / "app.key_secret").stat().st_mode & 0o077 == 0
    assert ajc(["keygen", "app", "--dir", str(keys)]) == 2


@pytest.mark.timeout(60)
def test_only_admitted_keys_get_anything_and_each_only_within_its_role(
    tmp_path: Path, keys: Path, procs: list[Proc]
) -> None:
    broker = _curve_broker(tmp_path, keys)
    try:
        admin = Client(broker.endpoint, timeout=2, **_as(keys, "ops"))
        app = Client(broker.endpoint, timeout=2, **_as(keys, "app"))
        # A client key submits and reads.
        t = app.submit("echo", {"x": 1}, queue="S")
        assert app.get(t.id).state == "new"
        # A peer with no key, or a key the broker does not know, gets nothing and changes nothing.
        for extra in ({}, _as(keys, "stranger")):
            with Client(broker.endpoint, timeout=0.5, **extra) as c, pytest.raises(RequestTimeout):
                c.submit("echo", None, queue="S")
        assert admin.queue_info("S").counts == {"new": 1}
        # A client key may not do what needs the admin role: FORBIDDEN names the role and the folder.
        with pytest.raises(Forbidden, match=r"admin role.*admin/"):
            app.delete_queue("S", force=True)
        # A worker key registers and runs the task; the admin key may delete the queue.
        extra = ["--curve-secret", str(keys / "worker.key_secret"), "--curve-server", str(keys / "broker.key")]
        procs.append(start_worker(broker, tmp_path, APP, queues=("S",), extra=extra, client=admin))
        assert app.wait(t.id, timeout=20).result == {"x": 1}
        admin.delete_queue("S", force=True)
        assert "S" not in {q.name for q in admin.queues()}
        # And a worker started with a client's key is refused: it exits with the broker's reason.
        wrong = ["--curve-secret", str(keys / "app.key_secret"), "--curve-server", str(keys / "broker.key")]
        bad = Proc(["-m", "ajq.worker", "--broker", broker.endpoint, *wrong, APP], tmp_path / "bad.log", tmp_path)
        procs.append(bad.start())
        assert bad.wait(20) == 2
        assert "worker role" in bad.tail()
        admin.close()
        app.close()
    finally:
        broker.close()


@pytest.mark.timeout(60)
def test_a_client_key_reaches_only_the_tasks_it_submitted(tmp_path: Path, keys: Path) -> None:
    broker = _curve_broker(tmp_path, keys)
    app = Client(broker.endpoint, timeout=2, **_as(keys, "app"))
    other = Client(broker.endpoint, timeout=2, **_as(keys, "other"))
    admin = Client(broker.endpoint, timeout=2, **_as(keys, "ops"))
    try:
        # Given a task submitted with the app's key, which the broker stores as its owner.
        t = app.submit("echo", {"x": 1}, queue="OWN")
        mine = app.get(t.id)
        assert mine.owner == load_public(keys / "app.key").decode()
        # When another client key reads, waits on, cancels, lists or depends on it, Then it is refused
        # (FORBIDDEN, saying whose key reaches it), and the task is as it was.
        for call in (
            lambda: other.get(t.id),
            lambda: other.wait(t.id, timeout=1),
            lambda: other.cancel(t.id),
            lambda: other.submit("echo", None, queue="OWN", depends_on=[t.id]),
        ):
            with pytest.raises(Forbidden, match="another key"):
                call()
        assert t.id not in {x.id for x in other.tasks(queue="OWN")}
        assert [x.id for x in app.tasks(queue="OWN")] == [t.id]
        assert admin.get(t.id).state == "new" and admin.queue_info("OWN").counts == {"new": 1}
        # And the app's own key, and an admin key, reach it.
        assert app.cancel(t.id).state == "terminated"
        assert t.id in {x.id for x in admin.tasks(queue="OWN")}
    finally:
        for c in (app, other, admin):
            c.close()
        broker.close()


@pytest.mark.timeout(60)
def test_an_admitted_key_cannot_take_a_connected_workers_routing_id(
    tmp_path: Path, keys: Path, procs: list[Proc]
) -> None:
    broker = _curve_broker(tmp_path, keys)
    admin = Client(broker.endpoint, timeout=2, **_as(keys, "ops"))
    ctx = zmq.Context()
    try:
        # Given a worker with its key, registered under its own routing id.
        extra = ["--curve-secret", str(keys / "worker.key_secret"), "--curve-server", str(keys / "broker.key")]
        procs.append(start_worker(broker, tmp_path, APP, queues=("HIJ",), extra=extra, client=admin))
        [worker] = admin.workers()
        # When a client key connects with that same routing id (ZeroMQ would hand the id over to it).
        thief = ctx.socket(zmq.DEALER)
        thief.setsockopt(zmq.LINGER, 0)
        thief.routing_id = worker.worker_id.encode()
        secret = load_secret(keys / "app.key_secret")
        thief.curve_secretkey, thief.curve_publickey = secret.secret, secret.public
        thief.curve_serverkey = load_public(keys / "broker.key")
        events = thief.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        thief.connect(broker.endpoint)
        assert events.poll(10_000), "the thief's handshake never completed"
        assert admin.queue_info("HIJ").name == "HIJ"  # a broker turn after the thief connected
        # Then the worker keeps its traffic: a task submitted now runs there, and the thief gets nothing.
        t = admin.submit("echo", {"n": 1}, queue="HIJ")
        assert admin.wait(t.id, timeout=20).result == {"n": 1}
        assert thief.poll(0) == 0
    finally:
        admin.close()
        ctx.destroy(linger=0)
        broker.close()


@pytest.mark.timeout(30)
def test_without_keys_the_broker_refuses_to_listen_beyond_this_host(tmp_path: Path) -> None:
    port = free_port()
    events = f"tcp://127.0.0.1:{free_port()}"  # the default, the port after --bind's, may be taken
    bind = ["--bind", f"tcp://0.0.0.0:{port}", "--events", events]
    args = ["-m", "ajq.broker", *bind, "--db", str(tmp_path / "x.db")]
    refused = Proc(args, tmp_path / "refused.log", tmp_path).start()
    assert refused.wait(20) == 2
    assert "ajc keygen" in refused.tail() and "--insecure" in refused.tail()
    allowed = Proc([*args, "--insecure"], tmp_path / "insecure.log", tmp_path).start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout=5) as c:
            assert c.queues()
    finally:
        allowed.kill()


@pytest.mark.timeout(60)
def test_a_worker_with_a_verify_key_runs_only_tasks_signed_by_its_pair(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a signing pair, and another, and a worker that runs only tasks of the first.
    keys = tmp_path / "sig"
    assert ajc(["keygen", "--signing", "app", "--dir", str(keys)]) == 0
    assert ajc(["keygen", "--signing", "other", "--dir", str(keys)]) == 0
    assert (keys / "app.sign").stat().st_mode & 0o077 == 0
    extra = ["--verify-key", str(keys / "app.verify")]
    procs.append(start_worker(broker, tmp_path, APP, queues=("SIG",), extra=extra))
    signed = Client(broker.endpoint, timeout=5, signing_key=str(keys / "app.sign"))
    forged = Client(broker.endpoint, timeout=5, signing_key=str(keys / "other.sign"))
    plain = broker.client()
    try:
        # When tasks come signed by the pair, by another key, and not at all.
        good = signed.submit("echo", {"n": 1}, queue="SIG")
        many = signed.submit_many([("echo", i) for i in range(3)], queue="SIG")
        wrong = forged.submit("echo", {"n": 2}, queue="SIG")
        bare = plain.submit("echo", {"n": 3}, queue="SIG")
        # Then only the first kind runs; the others end terminated, saying why, and never run.
        assert plain.wait(good.id, timeout=20).result == {"n": 1}
        assert [plain.wait(i, timeout=20).state for i in many] == ["complete"] * 3
        w, b = plain.wait(wrong.id, timeout=20), plain.wait(bare.id, timeout=20)
        assert (w.state, w.tries, b.state) == ("terminated", 1, "terminated")
        assert "does not match" in (w.last_error or "") and "not signed" in (b.last_error or "")
    finally:
        signed.close()
        forged.close()


def test_refused_addresses_are_remembered_within_a_bound(keys: Path) -> None:
    # Given the broker's ZAP handler (not started: `decide` is what it answers each handshake with).
    ctx = zmq.Context()
    try:
        gatekeeper = Gatekeeper(ctx, load_roles(str(keys / "authorized")), max_peers=10)
        # When strangers from more addresses than it remembers knock, Then each is refused and memory stays bounded.
        for n in range(MAX_LOGGED + 500):
            request = [b"1.0", b"1", PEERS_DOMAIN, f"10.0.{n // 256}.{n % 256}".encode(), b"", b"CURVE", b"x" * 32]
            assert gatekeeper.decide(request, float(n))[0] == b"400"
        assert len(gatekeeper.refused) <= MAX_LOGGED
        # And an admitted key still passes, with its role and key as User-Id; a NULL handshake does not.
        app = z85.decode(load_public(keys / "app.key"))
        assert gatekeeper.decide([b"1.0", b"2", PEERS_DOMAIN, b"10.1.0.1", b"", b"CURVE", app], 0.0) == (
            b"200",
            b"OK",
            b"CLIENT:" + load_public(keys / "app.key"),
        )
        assert gatekeeper.decide([b"1.0", b"3", PEERS_DOMAIN, b"10.1.0.1", b"", b"NULL"], 0.0)[0] == b"400"
    finally:
        ctx.term()
