"""The `ajc` commands: one function per command, taking the parsed arguments, returning the exit status."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ajq.client.cli_live import Filter, top, watch
from ajq.client.cli_views import (
    CRON_HEADERS,
    QUEUE_HEADERS,
    TASK_HEADERS,
    WORKER_HEADERS,
    cron_row,
    info_pairs,
    plain,
    print_json,
    print_pairs,
    print_rows,
    queue_json,
    queue_pairs,
    queue_row,
    record_json,
    record_pairs,
    task_row,
    waiting,
    worker_row,
)
from ajq.client.client import Client
from ajq.client.errors import ClientError, WaitTimeout
from ajq.client.models import CronInfo, QueueInfo, TaskInfo
from ajq.protocol import WAITING_STATES
from ajq.protocol.curve import KeyFileError, make_keys
from ajq.protocol.defaults import endpoint
from ajq.protocol.signing import SigningKeyError, make_signing_keys

CANCEL_WAIT_S = 5.0


class UsageError(Exception):
    """A bad argument found after parsing (e.g. a payload that is not JSON): exit 2, one line."""


class Aborted(Exception):
    """The user answered no to a confirmation: exit 1, one line."""


# -- helpers ----------------------------------------------------------------------------------


def connect(args: argparse.Namespace) -> Client:
    """A client for the --broker and --timeout given."""
    return Client(args.broker, timeout=args.timeout, curve_secret=args.curve_secret, curve_server=args.curve_server)


def keygen(args: argparse.Namespace) -> int:
    """`ajc keygen NAME`: write NAME.key (public: give it to the broker) and NAME.key_secret (keep it)."""
    try:
        if args.signing:
            public, secret = make_signing_keys(args.dir, args.name)
        else:
            public, secret = make_keys(args.dir, args.name)
    except (KeyFileError, SigningKeyError) as exc:
        raise UsageError(str(exc)) from None
    if args.signing:
        print(f"{public}  verify key: give it to workers with --verify-key")
        print(f"{secret}  signing key: keep it; clients sign with Client(signing_key=...) (mode 600)")
    else:
        print(f"{public}  public: copy it into the broker's --authorized-keys DIR under clients/, workers/ or admin/")
        print(f"{secret}  secret: keep it; give it with --curve-secret (mode 600)")
    return 0


def load_json(text: str | None, what: str) -> Any:
    """A JSON argument (None stays None); a usage error if it is not JSON."""
    try:
        return json.loads(text) if text is not None else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


def confirm(question: str, action: str) -> None:
    """Ask on the terminal; go on only if the user types y. Without a terminal, refuse: use --yes."""
    if not sys.stdin.isatty():
        raise UsageError(f"stdin is not a terminal: pass --yes to {action}")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise Aborted(f"aborted: did not {action}")


def show_queue(q: QueueInfo, as_json: bool) -> int:
    """Print one queue, vertical table or JSON."""
    if as_json:
        print_json(queue_json(q))
    else:
        print_pairs(f"queue {q.name}", queue_pairs(q))
    return 0


def show_task(t: TaskInfo, as_json: bool) -> int:
    """Print one task, vertical table or JSON."""
    if as_json:
        print_json(record_json(t))
    else:
        print_pairs(f"task {t.id}", record_pairs(t))
    return 0


def show_cron(c: CronInfo, as_json: bool) -> int:
    """Print one cron, vertical table or JSON."""
    if as_json:
        print_json(record_json(c))
    else:
        print_pairs(f"cron {c.name}", record_pairs(c))
    return 0


def done(as_json: bool, data: dict[str, Any], text: str) -> int:
    """Report an action that returns no record: a small JSON map, or one line of text."""
    if as_json:
        print_json(data)
    else:
        print(text)
    return 0


# -- queue commands ---------------------------------------------------------------------------


def queue_ls(args: argparse.Namespace) -> int:
    """`ajc queue ls`: every queue the broker knows."""
    with connect(args) as c:
        queues = sorted(c.queues(), key=lambda q: q.name)
    if args.json:
        print_json([queue_json(q) for q in queues])
    else:
        print_rows("queues", QUEUE_HEADERS, map(queue_row, queues), QUEUE_HEADERS[1:])
    return 0


def queue_view(args: argparse.Namespace) -> int:
    """`ajc queue view NAME`: one queue's settings and counts."""
    with connect(args) as c:
        return show_queue(c.queue_info(args.name), args.json)


def queue_configure(args: argparse.Namespace) -> int:
    """`ajc queue configure NAME`: create or change a queue; unset options keep their values."""
    with connect(args) as c:
        q = c.configure_queue(
            args.name, max_concurrent=args.concurrent, max_run_time=args.run_time, max_tries=args.tries,
            retention=args.retention, dead_max=args.dead_max, dead_retention=args.dead_retention,
            backoff=args.backoff,
        )  # fmt: skip
    return show_queue(q, args.json)


def queue_pause(args: argparse.Namespace) -> int:
    """`ajc queue pause NAME`: give out none of its tasks; running ones finish."""
    with connect(args) as c:
        return show_queue(c.pause_queue(args.name), args.json)


def queue_resume(args: argparse.Namespace) -> int:
    """`ajc queue resume NAME`: give out its tasks again."""
    with connect(args) as c:
        return show_queue(c.resume_queue(args.name), args.json)


def queue_purge(args: argparse.Namespace) -> int:
    """`ajc queue purge NAME`: delete its waiting tasks, after a confirmation."""
    with connect(args) as c:
        if not args.yes:
            n = waiting(c.queue_info(args.name))
            question = f"Delete the {n} waiting ({'/'.join(WAITING_STATES)}) tasks of queue {args.name!r}?"
            confirm(question, f"purge {args.name!r}")
        purged = c.purge_queue(args.name)
    return done(args.json, {"queue": args.name, "purged": purged}, f"purged {purged} tasks from queue {args.name}")


def queue_rm(args: argparse.Namespace) -> int:
    """`ajc queue rm NAME`: delete a queue and all its tasks, after a confirmation."""
    with connect(args) as c:
        if not args.yes:
            q = c.queue_info(args.name)
            running = q.counts.get("active", 0)
            kill = f", killing {running} running" if args.force and running else ""
            total = sum(q.counts.values())
            confirm(f"Delete queue {args.name!r} and its {total} tasks{kill}?", f"delete queue {args.name!r}")
        c.delete_queue(args.name, force=args.force)
    return done(args.json, {"deleted": args.name}, f"deleted queue {args.name}")


# -- task commands ----------------------------------------------------------------------------


def task_add(args: argparse.Namespace) -> int:
    """`ajc task add TYPE [PAYLOAD]`: submit one task; the arguments are checked before connecting."""
    payload = load_json(args.payload, "PAYLOAD")
    if args.load_results and not args.depends_on:
        raise UsageError("--load-results needs --depends-on: it hands the handler those tasks' results")
    with connect(args) as c:
        sub = c.submit(
            args.type, payload, queue=args.queue, task_id=args.id, deadline=args.deadline, run_at=args.run_at,
            delay=args.delay, unique_for=args.unique_for, depends_on=args.depends_on or (),
            load_results=args.load_results,
        )  # fmt: skip
    return done(args.json, {"id": sub.id, "type": sub.type, "queue": sub.queue}, sub.id)


def task_view(args: argparse.Namespace) -> int:
    """`ajc task view ID`: a task's state, payload, result and times."""
    with connect(args) as c:
        return show_task(c.get(args.id), args.json)


def task_ls(args: argparse.Namespace) -> int:
    """`ajc task ls`: tasks newest first, filtered, a page at a time."""
    with connect(args) as c:
        tasks = c.tasks(queue=args.queue, state=args.state, task_type=args.type, limit=args.limit, before=args.before)
    if args.json:
        print_json([record_json(t) for t in tasks])
        return 0
    print_rows("tasks", TASK_HEADERS, map(task_row, tasks), ["tries"])
    if len(tasks) == args.limit:
        print(f"more may follow: add --before {tasks[-1].seq} for the next page")
    return 0


def task_retry(args: argparse.Namespace) -> int:
    """`ajc task retry ID`: send an ended task (dead, expired, terminated, complete) back to run."""
    with connect(args) as c:
        return show_task(c.retry(args.id), args.json)


def task_rm(args: argparse.Namespace) -> int:
    """`ajc task rm ID`: delete a task that is not running."""
    with connect(args) as c:
        c.delete(args.id)
    return done(args.json, {"deleted": args.id}, f"deleted task {args.id}")


def task_cancel(args: argparse.Namespace) -> int:
    """`ajc task cancel ID`: end a waiting task now, or kill a running one and wait for its end."""
    with connect(args) as c:
        try:
            t = c.cancel(args.id, wait=0.0 if args.no_wait else CANCEL_WAIT_S)
        except WaitTimeout:
            t = c.get(args.id)
            print(f"ajc: cancel sent, but task {args.id} is still {t.state} after {CANCEL_WAIT_S:g}s", file=sys.stderr)
    return show_task(t, args.json)


def task_watch(args: argparse.Namespace) -> int:
    """`ajc task watch`: print task state changes as they happen, until --count, --timeout or Ctrl-C."""
    only = Filter(queue=args.queue, type=args.type, id=args.id)
    try:
        with connect(args) as c:
            seen = watch(c, only, args.json, args.count, args.wait)
    except KeyboardInterrupt:
        return 0
    if args.count is not None and seen < args.count:
        raise ClientError(f"saw {seen} of {args.count} events within {args.wait or 0:g}s")
    return 0


# -- cron, workers, info, top -----------------------------------------------------------------


def cron_add(args: argparse.Namespace) -> int:
    """`ajc cron add NAME CRON TYPE [PAYLOAD]`: create or replace a periodic task."""
    payload = load_json(args.payload, "PAYLOAD")
    with connect(args) as c:
        return show_cron(c.add_cron(args.name, args.cron, args.type, payload, queue=args.queue), args.json)


def cron_ls(args: argparse.Namespace) -> int:
    """`ajc cron ls`: every periodic task."""
    with connect(args) as c:
        crons = sorted(c.crons(), key=lambda x: x.name)
    if args.json:
        print_json([record_json(x) for x in crons])
    else:
        print_rows("crons", CRON_HEADERS, map(cron_row, crons))
    return 0


def cron_view(args: argparse.Namespace) -> int:
    """`ajc cron view NAME`: one periodic task, with its next and last run."""
    with connect(args) as c:
        return show_cron(c.cron(args.name), args.json)


def cron_rm(args: argparse.Namespace) -> int:
    """`ajc cron rm NAME`: delete a periodic task; tasks it submitted stay."""
    with connect(args) as c:
        c.delete_cron(args.name)
    return done(args.json, {"deleted": args.name}, f"deleted cron {args.name}")


def workers_ls(args: argparse.Namespace) -> int:
    """`ajc workers`: the live workers and what they serve."""
    with connect(args) as c:
        workers = sorted(c.workers(), key=lambda w: w.worker_id)
    if args.json:
        print_json([record_json(w) for w in workers])
    else:
        print_rows("workers", WORKER_HEADERS, map(worker_row, workers), ["pid", "procs", "running"])
    return 0


def broker_info(args: argparse.Namespace) -> int:
    """`ajc info`: the broker's pid, uptime, database, events endpoint and totals."""
    with connect(args) as c:
        data = c.info()
    if args.json:
        print_json(plain(data))
    else:
        print_pairs(f"broker {endpoint(args.broker)}", info_pairs(data))
    return 0


def top_view(args: argparse.Namespace) -> int:
    """`ajc top`: a live dashboard of queues and workers until Ctrl-C; --once prints one frame."""
    try:
        with connect(args) as c:
            top(c, args.interval, args.once)
    except KeyboardInterrupt:
        pass
    return 0
