"""ajworker's settings: one frozen dataclass; the CLI and the environment fill it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ajq.protocol import options
from ajq.protocol.defaults import DEFAULT_QUEUE, endpoint
from ajq.protocol.limits import MAX_PREFETCH_PER_PROC, MAX_WORKER_PROCS
from ajq.worker.errors import WorkerConfigError

MAX_WEIGHT = 1000  # the protocol's bound on a queue weight


@dataclass(frozen=True)
class WorkerConfig:
    """Every ajworker setting, checked once when built; units are in the names."""

    broker: str = field(default_factory=endpoint)
    procs: int = 1  # child processes, one task each
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    weights: tuple[int, ...] = ()  # one per queue, 1 to MAX_WEIGHT; empty: all 1
    strict: bool = False  # strict priority in the order of `queues` (a queue only when earlier ones are empty)
    prefetch: int = -1  # tasks held ready beyond procs; -1: adaptive (about 25 ms of work)
    shutdown_timeout_s: float = 8.0  # on SIGTERM/SIGINT, time running tasks get to finish
    heartbeat_s: float = 1.0  # until the broker's welcome says otherwise
    ack_timeout_s: float = 3.0  # at shutdown, how long to wait for the broker to take our results
    max_tasks_per_child: int = 0  # a child is replaced after this many tasks; 0: never
    curve_secret: str | None = None  # our NAME.key_secret (else $AJQ_CURVE_SECRET), for a broker that needs keys
    curve_server: str | None = None  # the broker's public broker.key (else $AJQ_CURVE_SERVER)
    verify_key: str | None = None  # a NAME.verify file: run only tasks signed with its NAME.sign
    max_memory_per_child_mb: float = 0.0  # a child whose RSS is over this after a task is replaced; 0: never

    def __post_init__(self) -> None:
        """Refuse settings that cannot work, with a message saying what is accepted."""
        procs_problem = options.count_problem(self.procs, minimum=1) or (
            f"at most {MAX_WORKER_PROCS}" if self.procs > MAX_WORKER_PROCS else None
        )
        _check("procs", self.procs, procs_problem, "2")
        if not self.queues:
            raise WorkerConfigError("no queue to serve: name one with --queue")
        if len(set(self.queues)) != len(self.queues):
            raise WorkerConfigError(f"a queue is named twice in {list(self.queues)}: name each once")
        if not self.weights:
            object.__setattr__(self, "weights", (1,) * len(self.queues))  # frozen: set once, here
        self._check_weights()
        most = MAX_PREFETCH_PER_PROC * self.procs
        if self.prefetch != -1 and (options.count_problem(self.prefetch, minimum=0) or self.prefetch > most):
            _check("prefetch", self.prefetch, f"-1 (adaptive), or 0 to {most} ({MAX_PREFETCH_PER_PROC} a process)", "8")
        for name, example in (("shutdown_timeout_s", "8.0"), ("heartbeat_s", "1.0"), ("ack_timeout_s", "3.0")):
            value = getattr(self, name)
            _check(name, value, options.seconds_problem(value, zero_ok=name == "shutdown_timeout_s"), example)
        tasks, memory = self.max_tasks_per_child, self.max_memory_per_child_mb
        _check("max_tasks_per_child", tasks, options.count_problem(tasks, minimum=0), "1000 (0: no limit)")
        _check(
            "max_memory_per_child_mb",
            memory,
            options.seconds_problem(memory, zero_ok=True, unit="megabytes"),
            "512 (0: no limit)",
        )

    def _check_weights(self) -> None:
        """One weight per queue, each an integer from 1 to MAX_WEIGHT."""
        if len(self.weights) != len(self.queues):
            raise WorkerConfigError(f"{len(self.weights)} weights for {len(self.queues)} queues: give one per queue")
        for queue, weight in zip(self.queues, self.weights, strict=True):
            if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
                raise WorkerConfigError(f"queue {queue!r} has weight {weight!r}: use an integer from 1 to {MAX_WEIGHT}")


def _check(name: str, value: object, problem: str | None, example: str) -> None:
    """Raise WorkerConfigError naming the setting when a check found a problem."""
    if problem:
        raise WorkerConfigError(options.refusal(name, value, problem, example))
