"""`ajc`: the admin command line for queues, tasks, crons and workers, with a live `top`.

Every listing takes --json; every expected error is one `ajc: ...` line on stderr and exit 1
(2 for a usage error), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import zmq

from client import calls
from client.cli_live import Filter, top, watch
from client.cli_views import (
    CRON_HEADERS,
    QUEUE_HEADERS,
    STATES,
    TASK_HEADERS,
    WAITING,
    WORKER_HEADERS,
    count_or_zero,
    cron_row,
    format_duration,
    info_pairs,
    parse_deadline,
    parse_duration,
    parse_time,
    parse_tries,
    plain,
    positive_float,
    positive_int,
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
from client.client import Client
from client.errors import ClientError, WaitTimeout
from client.models import CronInfo, QueueInfo, TaskInfo

__all__ = ["build_parser", "format_duration", "main", "parse_duration"]

CANCEL_WAIT_S = 5.0
MAX_LIMIT = 1000  # tasks in one `task ls` page

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A bad argument found after parsing (e.g. a payload that is not JSON): exit 2, one line."""


class Aborted(Exception):
    """The user answered no to a confirmation: exit 1, one line."""


# -- helpers ----------------------------------------------------------------------------------


def connect(args: argparse.Namespace) -> Client:
    """A client for the --broker and --timeout given."""
    return Client(args.broker, timeout=args.timeout)


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
            question = f"Delete the {n} waiting ({'/'.join(WAITING)}) tasks of queue {args.name!r}?"
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
        print_pairs(f"broker {calls.endpoint(args.broker)}", info_pairs(data))
    return 0


def top_view(args: argparse.Namespace) -> int:
    """`ajc top`: a live dashboard of queues and workers until Ctrl-C; --once prints one frame."""
    try:
        with connect(args) as c:
            top(c, args.interval, args.once)
    except KeyboardInterrupt:
        pass
    return 0


# -- parser -----------------------------------------------------------------------------------


def command(sub: Any, name: str, func: Command, help_text: str, *, json_flag: bool = True) -> argparse.ArgumentParser:
    """Add a subcommand that runs func and (unless told otherwise) takes --json."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON to stdout instead of a table")
    p.set_defaults(func=func)
    return p


def confirmable(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    return p


def add_queue_commands(groups: Any) -> None:
    queue = groups.add_parser("queue", help="list, view, configure, pause and delete queues")
    sub = queue.add_subparsers(dest="action", required=True)
    command(sub, "ls", queue_ls, "list all queues")
    command(sub, "view", queue_view, "show one queue").add_argument("name")
    conf = command(sub, "configure", queue_configure, "create or change a queue")
    conf.add_argument("name")
    conf.add_argument("--concurrent", type=positive_int, help="max tasks of this queue running at once")
    conf.add_argument("--run-time", type=parse_duration, help="max run time of one try: 90, 90s, 10m, 1h30m, 2d")
    conf.add_argument("--tries", type=parse_tries, help="max tries per task; -1 or unlimited for no limit")
    conf.add_argument("--retention", type=parse_duration, help="how long ended tasks are kept, e.g. 1d")
    conf.add_argument("--dead-max", type=count_or_zero, help="most dead tasks kept; the oldest go first")
    conf.add_argument("--dead-retention", type=parse_duration, help="how long dead tasks are kept, e.g. 90d")
    command(sub, "pause", queue_pause, "stop giving out the queue's tasks").add_argument("name")
    command(sub, "resume", queue_resume, "give out the queue's tasks again").add_argument("name")
    confirmable(command(sub, "purge", queue_purge, "delete the queue's waiting tasks")).add_argument("name")
    rm = confirmable(command(sub, "rm", queue_rm, "delete a queue and all its tasks"))
    rm.add_argument("name")
    rm.add_argument("--force", action="store_true", help="delete even with tasks running (they are killed)")


def add_task_commands(groups: Any) -> None:
    sub = groups.add_parser("task", help="add, list, view, retry, cancel, delete and watch tasks").add_subparsers(
        dest="action", required=True
    )
    add = command(sub, "add", task_add, "submit one task")
    add.add_argument("type", help="the task type, as a worker's handler is registered")
    add.add_argument("payload", nargs="?", help="the payload as JSON text (default null)")
    add.add_argument("--queue", default=calls.DEFAULT_QUEUE, help="queue name (default DEFAULT)")
    add.add_argument("--id", help="task id (default: the broker makes one); makes a resubmit safe")
    when = add.add_mutually_exclusive_group()
    when.add_argument("--delay", type=parse_duration, help="run no sooner than this from now: 90s, 10m, 2h")
    when.add_argument("--run-at", type=parse_time, help="run no sooner than this ISO 8601 time (UTC if no offset)")
    add.add_argument("--deadline", type=parse_deadline, help="expire unless started by then: ISO 8601 or 10m from now")
    add.add_argument("--unique-for", type=parse_duration, help="refuse the same type+payload in the queue this long")
    add.add_argument("--depends-on", action="append", metavar="ID", help="run after this task completes (repeatable)")
    add.add_argument("--load-results", action="store_true", help="hand the handler the results of --depends-on")
    command(sub, "view", task_view, "show one task").add_argument("id")
    ls = command(sub, "ls", task_ls, "list tasks, newest first")
    ls.add_argument("--queue", help="only this queue")
    ls.add_argument("--state", choices=STATES, help="only tasks in this state")
    ls.add_argument("--type", help="only tasks of this type")
    ls.add_argument("--limit", type=positive_int, default=20, help=f"tasks per page (20, at most {MAX_LIMIT})")
    ls.add_argument("--before", type=int, metavar="SEQ", help="the page after: the value the last page printed")
    command(sub, "retry", task_retry, "run an ended task again").add_argument("id")
    command(sub, "rm", task_rm, "delete a task that is not running").add_argument("id")
    cancel = command(sub, "cancel", task_cancel, "cancel a task: a waiting one ends, a running one is killed")
    cancel.add_argument("id")
    cancel.add_argument("--no-wait", action="store_true", help=f"do not wait up to {CANCEL_WAIT_S:g}s for the end")
    watch_p = command(sub, "watch", task_watch, "print task state changes as they happen (Ctrl-C stops)")
    watch_p.add_argument("--queue", help="only this queue")
    watch_p.add_argument("--type", help="only this task type")
    watch_p.add_argument("--id", help="only this task")
    watch_p.add_argument("--count", type=positive_int, help="stop after this many events (exit 1 if fewer came)")
    watch_p.add_argument("--timeout", dest="wait", type=positive_float, help="stop after this many seconds")


def add_other_commands(groups: Any) -> None:
    sub = groups.add_parser("cron", help="add, list, view and delete periodic tasks").add_subparsers(
        dest="action", required=True
    )
    add = command(sub, "add", cron_add, "create or replace a periodic task (times in UTC)")
    add.add_argument("name")
    add.add_argument("cron", help='a cron expression, e.g. "*/5 * * * *"')
    add.add_argument("type", help="the task type to submit")
    add.add_argument("payload", nargs="?", help="the payload as JSON text (default null)")
    add.add_argument("--queue", default=calls.DEFAULT_QUEUE, help="queue name (default DEFAULT)")
    command(sub, "ls", cron_ls, "list periodic tasks")
    command(sub, "view", cron_view, "show one periodic task").add_argument("name")
    command(sub, "rm", cron_rm, "delete a periodic task").add_argument("name")
    command(groups, "workers", workers_ls, "list live workers")
    command(groups, "info", broker_info, "show the broker's info")
    top_p = command(groups, "top", top_view, "live dashboard of queues and workers (Ctrl-C quits)", json_flag=False)
    top_p.add_argument("--interval", type=positive_float, default=1.0, help="seconds between refreshes (1)")
    top_p.add_argument("--once", action="store_true", help="print one frame and exit")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: `ajc [--broker E] [--timeout S] {queue,task,cron,workers,info,top} ...`."""
    p = argparse.ArgumentParser(prog="ajc", description="Admin CLI for the ajq broker.")
    p.add_argument("--broker", help=f"broker endpoint (env AJQ_BROKER; default {calls.DEFAULT_ENDPOINT})")
    p.add_argument("--timeout", type=positive_float, default=10.0, help="seconds to wait for the broker (10)")
    groups = p.add_subparsers(dest="group", required=True, metavar="{queue,task,cron,workers,info,top}")
    add_queue_commands(groups)
    add_task_commands(groups)
    add_other_commands(groups)
    return p


# -- entry point ------------------------------------------------------------------------------


def fail(message: str, status: int) -> int:
    """Print one line `ajc: message` to stderr and return the exit status."""
    print(f"ajc: {' '.join(message.split())}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Run one ajc command; every expected error becomes one stderr line and a non-zero status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "limit", None) is not None and args.limit > MAX_LIMIT:
        parser.error(f"argument --limit: at most {MAX_LIMIT}")
    func: Command = args.func
    try:
        return func(args)
    except UsageError as exc:
        return fail(str(exc), 2)
    except (ClientError, Aborted) as exc:
        return fail(str(exc) or type(exc).__name__, 1)
    except zmq.ZMQError as exc:
        return fail(f"cannot reach the broker at {calls.endpoint(args.broker)}: {exc}", 1)
    except BrokenPipeError:  # `ajc task watch | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
