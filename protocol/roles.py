"""Who may send what, when the broker admits keys by role (CURVE, `--authorized-keys DIR`):
keys in DIR/clients/ submit and read, DIR/workers/ also register and take leases, DIR/admin/
may do everything (configure, pause, purge and delete queues, retry and delete tasks, schedules)."""

from __future__ import annotations

from enum import IntEnum

from ajq.protocol.messages import Kind


class Role(IntEnum):
    CLIENT = 1
    WORKER = 2
    ADMIN = 3


DIRECTORIES = {"clients": Role.CLIENT, "workers": Role.WORKER, "admin": Role.ADMIN}

_WORKER_KINDS = {Kind.HELLO, Kind.CREDIT, Kind.PAUSE, Kind.RESULTS, Kind.RELEASE, Kind.HEARTBEAT, Kind.BYE, Kind.EXTEND}
_ADMIN_KINDS = {
    Kind.QUEUE_CONFIGURE, Kind.QUEUE_PAUSE, Kind.QUEUE_RESUME, Kind.QUEUE_PURGE, Kind.QUEUE_DELETE,
    Kind.TASK_RETRY, Kind.TASK_DELETE, Kind.CRON_ADD, Kind.CRON_DELETE,
}  # fmt: skip


def needed(kind: Kind) -> Role:
    """The least role that may send `kind`."""
    if kind in _ADMIN_KINDS:
        return Role.ADMIN
    if kind in _WORKER_KINDS:
        return Role.WORKER
    return Role.CLIENT


def refusal(role: Role, kind: Kind) -> str | None:
    """Why a key of `role` may not send `kind` (None: it may)."""
    need = needed(kind)
    if role >= need:
        return None
    folder = next(name for name, r in DIRECTORIES.items() if r is need)
    return (
        f"'{kind.value}' needs a key with the {need.name.lower()} role, and this key has the {role.name.lower()} "
        f"role: use a key whose public half is in the broker's authorized keys under {folder}/"
    )
