"""`ajc`: the admin command line for queues, tasks, crons and workers, with a live `top`.

Every listing takes --json; every expected error is one `ajc: ...` line on stderr and exit 1
(2 for a usage error), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import zmq

from ajq.client.cli_commands import (
    CANCEL_WAIT_S,
    Aborted,
    UsageError,
    broker_info,
    cron_add,
    cron_ls,
    cron_rm,
    cron_view,
    keygen,
    queue_configure,
    queue_ls,
    queue_pause,
    queue_purge,
    queue_resume,
    queue_rm,
    queue_view,
    task_add,
    task_cancel,
    task_ls,
    task_retry,
    task_rm,
    task_view,
    task_watch,
    top_view,
    workers_ls,
)
from ajq.client.cli_views import (
    STATES,
    count_or_zero,
    format_duration,
    parse_deadline,
    parse_duration,
    parse_time,
    parse_tries,
    positive_float,
    positive_int,
)
from ajq.client.errors import ClientError
from ajq.protocol import options
from ajq.protocol.defaults import DEFAULT_ENDPOINT, DEFAULT_QUEUE, endpoint

__all__ = ["build_parser", "format_duration", "main", "parse_duration"]

MAX_LIMIT = 1000  # tasks in one `task ls` page

Command = Callable[[argparse.Namespace], int]


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
    conf.add_argument(
        "--backoff",
        type=parse_duration,
        help="wait before retrying a try that got no answer (doubled per try), e.g. 5s",
    )
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
    add.add_argument("--queue", default=DEFAULT_QUEUE, help="queue name (default DEFAULT)")
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
    add.add_argument("--queue", default=DEFAULT_QUEUE, help="queue name (default DEFAULT)")
    command(sub, "ls", cron_ls, "list periodic tasks")
    command(sub, "view", cron_view, "show one periodic task").add_argument("name")
    command(sub, "rm", cron_rm, "delete a periodic task").add_argument("name")
    key = command(groups, "keygen", keygen, "write a CURVE key pair: NAME.key and NAME.key_secret", json_flag=False)
    key.add_argument("name")
    key.add_argument("--dir", default=".", help="where to write the two files (default: here)")
    key.add_argument("--signing", action="store_true", help="a task signing pair instead: NAME.sign and NAME.verify")
    command(groups, "workers", workers_ls, "list live workers")
    command(groups, "info", broker_info, "show the broker's info")
    top_p = command(groups, "top", top_view, "live dashboard of queues and workers (Ctrl-C quits)", json_flag=False)
    top_p.add_argument("--interval", type=positive_float, default=1.0, help="seconds between refreshes (1)")
    top_p.add_argument("--once", action="store_true", help="print one frame and exit")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: `ajc [--broker E] [--timeout S] {queue,task,cron,workers,info,top} ...`."""
    p = options.OneLineParser(prog="ajc", description="Admin CLI for the ajq broker.")
    p.add_argument("--broker", help=f"broker endpoint (env AJQ_BROKER; default {DEFAULT_ENDPOINT})")
    p.add_argument("--timeout", type=positive_float, default=10.0, help="seconds to wait for the broker (10)")
    p.add_argument("--curve-secret", help="our NAME.key_secret, for a broker that needs keys (env AJQ_CURVE_SECRET)")
    p.add_argument("--curve-server", help="the broker's public broker.key (env AJQ_CURVE_SERVER)")
    groups = p.add_subparsers(dest="group", required=True, metavar="{queue,task,cron,keygen,workers,info,top}")
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
        return fail(f"cannot reach the broker at {endpoint(args.broker)}: {exc}", 1)
    except BrokenPipeError:  # `ajc task watch | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
