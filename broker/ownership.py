"""Whose tasks a key reaches: with CURVE keys, a key of the client role reads, waits on, cancels,
lists and depends on only the tasks it submitted; worker and admin keys reach every task. Without
keys every peer is this host's own and reaches everything."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ajq.protocol import ErrorCode, ProtocolError
from ajq.protocol.roles import Role

if TYPE_CHECKING:
    from ajq.broker.core import Broker


def submitter(b: Broker, ident: bytes) -> str | None:
    """The key a task submitted by `ident` is stored under (None without keys)."""
    peer = b.peer(ident)
    return peer.key if peer is not None and peer.key else None


def own_only(b: Broker, ident: bytes) -> str | None:
    """The key whose tasks alone `ident` may reach; None: it reaches every task."""
    peer = b.peer(ident)
    return peer.key if peer is not None and peer.role is Role.CLIENT else None


def check(b: Broker, ident: bytes, task_id: str, owner: str | None) -> None:
    """Refuse `ident` a task another key submitted, if it reaches only its own."""
    key = own_only(b, ident)
    if key is not None and owner != key:
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            f"task {task_id} was submitted with another key: a key with the client role reaches only its own "
            "tasks; use that key, or one with the admin role",
        )


def check_all(b: Broker, ident: bytes, task_ids: list[str]) -> None:
    """`check` for several tasks at once (the parents a task depends on)."""
    if own_only(b, ident) is None or not task_ids:
        return
    for task_id, owner in b.store.owners(task_ids).items():
        check(b, ident, task_id, owner)
