"""ajbroker's settings: one frozen dataclass; the CLI and the environment fill it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ajq.broker.errors import BrokerConfigError
from ajq.protocol import options
from ajq.protocol.defaults import DEFAULT_ENDPOINT, endpoint
from ajq.protocol.limits import (
    BEATS_PER_BOUND,
    HARD_BATCH,
    HARD_FRAME_BYTES,
    KIB,
    LEASE_MARGIN_S,
    MAX_BATCH,
    MAX_FRAME_BYTES,
    MAX_PAYLOAD_BYTES,
    MIB,
    Limits,
)

DEFAULT_DB = "./ajq.db"


DAY_S = 86_400.0


@dataclass(frozen=True)
class QueueDefaults:
    max_concurrent: int
    max_run_time_s: float
    max_tries: int  # -1: unlimited
    retention_s: float = DAY_S  # how long complete (and other ended) tasks keep their results
    dead_max: int = 10_000  # asynq's archive cap
    dead_retention_s: float = 90 * DAY_S
    backoff_s: float = (
        1.0  # a try that ended without an answer (lost worker, lease ran out) waits this, doubled per try
    )


# asyncjobs' implicit queue (DEFAULT_QUEUE), and what any other queue gets when first named.
DEFAULT_QUEUE_LIMITS = QueueDefaults(max_concurrent=100, max_run_time_s=60.0, max_tries=100)
NEW_QUEUE_LIMITS = QueueDefaults(max_concurrent=100, max_run_time_s=3600.0, max_tries=-1)


@dataclass(frozen=True)
class BrokerConfig:
    bind: str = DEFAULT_ENDPOINT
    db: str = DEFAULT_DB
    synchronous: str = "FULL"  # SQLite's synchronous pragma: FULL makes every commit durable
    heartbeat_s: float = 1.0  # both ways
    lease_bound_s: float = 0.0  # a worker's children stop after this long without contact; 0: 3 beats
    lease_grace_s: float = 2.0  # time past max_run_time for a worker's own timeout report to arrive
    max_batch_messages: int = 4096  # messages applied in one transaction at most
    max_step_bytes: int = 64 * 1024 * 1024  # and their bytes: a step stops reading past this
    max_queues: int = 1000  # queues that may exist at once; naming one more is refused
    max_workers: int = 10_000  # workers registered at once; one more HELLO is refused
    max_waits: int = 100_000  # WAITs parked at once; one more is refused (the client may poll instead)
    max_peers: int | None = None  # connections admitted at once; None: DEFAULT_MAX_PEERS, or what the fd limit allows
    max_frame_mb: int = MAX_FRAME_BYTES // MIB  # one message, in MiB; larger ones are refused TOO_LARGE
    max_payload_kb: int = MAX_PAYLOAD_BYTES // KIB  # one payload or result, in KiB; at most half a frame
    max_batch: int = MAX_BATCH  # tasks in one SUBMIT, items in one RESULTS or RELEASE, tasks in one DELIVER
    max_db_mb: int | None = None  # cap on the database file: past it writes fail as on a full disk
    events_bind: str | None = None  # PUB socket for task events; default: the --bind port + 1
    curve_secret: str | None = None  # the broker's NAME.key_secret: CURVE on every socket
    authorized_keys: str | None = None  # DIR with clients/, workers/, admin/ of public NAME.key files
    insecure: bool = False  # allow listening beyond this host with no keys

    def __post_init__(self) -> None:
        if self.synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise BrokerConfigError(f"synchronous={self.synchronous!r}: use FULL (durable), EXTRA, NORMAL or OFF")
        _check("heartbeat_s", self.heartbeat_s, options.seconds_problem(self.heartbeat_s), "1.0")
        if self.lease_bound_s == 0.0:
            object.__setattr__(self, "lease_bound_s", BEATS_PER_BOUND * self.heartbeat_s)  # frozen: set once, here
        bound_problem = options.seconds_problem(self.lease_bound_s) or (
            f"at least 2 heartbeats ({2 * self.heartbeat_s:g}s)" if self.lease_bound_s < 2 * self.heartbeat_s else None
        )
        _check("lease_bound_s", self.lease_bound_s, bound_problem, f"{BEATS_PER_BOUND * self.heartbeat_s:g}")
        _check("lease_grace_s", self.lease_grace_s, options.seconds_problem(self.lease_grace_s, zero_ok=True), "2.0")
        batch = self.max_batch_messages
        _check("max_batch_messages", batch, options.count_problem(batch, minimum=1), "4096")
        step = self.max_step_bytes
        _check("max_step_bytes", step, options.count_problem(step, minimum=1), str(64 * 1024 * 1024))
        _check("max_queues", self.max_queues, options.count_problem(self.max_queues, minimum=1), "1000")
        _check("max_workers", self.max_workers, options.count_problem(self.max_workers, minimum=1), "10000")
        _check("max_waits", self.max_waits, options.count_problem(self.max_waits, minimum=1), "100000")
        if self.max_peers is not None:
            _check("max_peers", self.max_peers, options.count_problem(self.max_peers, minimum=1), "10000")
        self._check_limits()
        self._check_security()
        if self.max_db_mb is not None:
            _check("max_db_mb", self.max_db_mb, options.count_problem(self.max_db_mb, minimum=1), "512")

    def _check_limits(self) -> None:
        """Frame under ZeroMQ's hard limit, a payload at most half a frame (so one item and its envelope
        always fit one message), a batch within HARD_BATCH."""
        most_mb = HARD_FRAME_BYTES // MIB - 1
        frame = self.max_frame_mb
        _check("max_frame_mb", frame, options.count_problem(frame, minimum=1, maximum=most_mb), "8")
        payload, most_kb = self.max_payload_kb, frame * MIB // 2 // KIB
        problem = options.count_problem(payload, minimum=1, maximum=most_kb)
        example = str(min(MAX_PAYLOAD_BYTES // KIB, most_kb))
        _check("max_payload_kb", payload, problem and f"{problem} (half of max_frame_mb={frame})", example)
        batch_problem = options.count_problem(self.max_batch, minimum=1, maximum=HARD_BATCH)
        _check("max_batch", self.max_batch, batch_problem, "10000")

    @property
    def limits(self) -> Limits:
        """The frame, payload and batch limits in bytes and items, naming ajbroker's flags in refusals."""
        return Limits(self.max_frame_mb * MIB, self.max_payload_kb * KIB, self.max_batch, set_by="ajbroker")

    def _check_security(self) -> None:
        """Keys come as a pair; without them only this host may listen, unless `insecure`."""
        if bool(self.curve_secret) != bool(self.authorized_keys):
            raise BrokerConfigError(
                "CURVE needs both --curve-secret broker.key_secret and --authorized-keys DIR "
                "(env AJQ_CURVE_SECRET, AJQ_AUTHORIZED_KEYS)"
            )
        if self.curve_secret or self.insecure:
            return
        for where in (self.bind, self.events_bind or self.bind):
            if not is_local(where):
                raise BrokerConfigError(
                    f"ajbroker would listen on {where} with no keys: anyone who can reach it could submit, cancel "
                    "and delete tasks. Make keys (`ajc keygen broker`, `ajc keygen NAME` for each client and worker, "
                    "their .key files in DIR/clients, DIR/workers, DIR/admin) and start with --curve-secret "
                    "broker.key_secret --authorized-keys DIR, or pass --insecure"
                )

    @property
    def silent_after_s(self) -> float:
        """How long a worker may stay silent before the broker takes its tasks back (SPEC 6.1)."""
        return self.lease_bound_s + LEASE_MARGIN_S

    @property
    def events_endpoint(self) -> str:
        """Where task events are published: `events_bind`, else the port after `bind`'s (any free
        port when `bind` asks for one: the broker reports the one it got in INFO)."""
        if self.events_bind:
            return self.events_bind
        base, _, port = self.bind.rpartition(":")
        if not self.bind.startswith("tcp://"):
            raise BrokerConfigError(f"cannot derive an events endpoint from {self.bind!r}: give --events explicitly")
        if not port.isdigit() or int(port) == 0:
            return f"{base}:*"
        return f"{base}:{int(port) + 1}"

    @classmethod
    def from_env(cls, **overrides: object) -> BrokerConfig:
        """Defaults, then AJQ_BROKER / AJQ_DB from the environment, then explicit overrides."""
        values: dict[str, object] = {
            "bind": endpoint(),
            "db": os.environ.get("AJQ_DB", DEFAULT_DB),
            "curve_secret": os.environ.get("AJQ_CURVE_SECRET") or None,
            "authorized_keys": os.environ.get("AJQ_AUTHORIZED_KEYS") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def is_local(endpoint: str) -> bool:
    """Only this host can connect: ipc://, inproc://, or TCP on a loopback address."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint.removeprefix("tcp://").rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _check(name: str, value: object, problem: str | None, example: str) -> None:
    """Raise BrokerConfigError naming the setting when a check found a problem."""
    if problem:
        raise BrokerConfigError(options.refusal(name, value, problem, example))
