"""ajq as shipped (synchronous=FULL) and with --synchronous NORMAL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from ajq import Client, ClientError
from bench.peers.apps import QUEUE
from bench.peers.systems.base import Item, Submitter, System, Where
from bench.procs import Cluster

if TYPE_CHECKING:
    from bench.peers.stack import Stack

APP = "bench.peers.apps.ajq_app:router"


class AjqSubmitter:
    def __init__(self, where: Where) -> None:
        self.client = Client(where.endpoint, timeout=30.0)

    def submit_all(self, kind: str, items: Sequence[Item]) -> None:
        submit = self.client.submit
        for bid, arg in items:
            submit("body", {"k": kind, "id": bid, "a": arg}, queue=QUEUE)

    def close(self) -> None:
        self.client.close()


class Ajq(System):
    key = "ajq"
    label = "ajq (FULL)"
    package = "ajq"
    synchronous: ClassVar[str] = "FULL"
    settings = "ajbroker as shipped (--synchronous FULL); ajworker --procs 2; queue with default limits"
    durability = "committed to disk (WAL, fsync) before submit() returns"
    eventually = "after about 5 s"
    crash_note = "lease bound (3 s) + margin (1 s) + queue backoff (1 s) at the default 1 s heartbeat"

    def start_backend(self, stack: Stack) -> Where:
        tmp = stack.tmp / "broker"
        tmp.mkdir()
        args = ("--synchronous", self.synchronous)
        cluster = stack.exit.enter_context(Cluster(tmp=tmp, broker_args=args))
        with cluster.client() as c:
            c.configure_queue(QUEUE)
        stack.backend_pids.append(cluster.procs[0].popen.pid)
        return Where(endpoint=cluster.endpoint)

    def worker_args(self, where: Where) -> list[list[str]]:
        return [["-m", "ajq.worker", "--broker", where.endpoint, "--procs", "2", "--queue", QUEUE, APP]]

    def ready(self, stack: Stack) -> bool:
        try:
            with Client(stack.where.endpoint, timeout=1.0) as c:
                return c.queue_info(QUEUE).workers >= 1
        except ClientError:
            return False

    @staticmethod
    def submitter(where: Where) -> Submitter:
        return AjqSubmitter(where)


class AjqNormal(Ajq):
    key = "ajq-normal"
    label = "ajq (NORMAL)"
    synchronous = "NORMAL"
    settings = "ajbroker --synchronous NORMAL; ajworker --procs 2; queue with default limits"
    durability = "in the WAL before submit() returns; fsync at checkpoints (a power loss may lose the last commits)"
