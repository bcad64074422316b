"""`ajworker`: serve queues with a pool of forked processes running the app's handlers."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from ajq.protocol import options
from ajq.protocol.defaults import DEFAULT_ENDPOINT, DEFAULT_QUEUE
from ajq.worker.config import MAX_WEIGHT, WorkerConfig
from ajq.worker.cpus import available_cpus
from ajq.worker.errors import BrokerRefused, WorkerConfigError, WorkerError
from ajq.worker.retry import BY_NAME, RETRY_DEFAULT, by_name
from ajq.worker.router import Router


def load_router(spec: str) -> Router:
    """Import 'package.module:attribute' (the current directory is on the path) and check it."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise WorkerConfigError(f"app {spec!r}: write it as module:attribute, e.g. myapp.tasks:router")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkerConfigError(f"cannot import {module_name!r}: {exc}") from exc
    router = getattr(module, attr, None)
    if not isinstance(router, Router):
        raise WorkerConfigError(f"{spec!r} is {type(router).__name__}, not a worker.Router")
    return router


def parse_procs(value: str) -> int:
    """--procs: a positive number, or 'auto' for the CPUs this process may use."""
    if value == "auto":
        return available_cpus()
    return _PROCS(value)


_PROCS = options.count_arg(minimum=1, example="2", what="auto or a whole number of 1 or more")


def parse_queue(value: str) -> tuple[str, int]:
    """--queue NAME or NAME=WEIGHT (asynq's weighted priority); a bare name has weight 1.

    The weight follows the last '=', so a queue whose name holds '=' is given with its weight.
    """
    name, eq, weight_text = value.rpartition("=")
    if not eq:
        name, weight_text = value, "1"
    if not name:
        raise argparse.ArgumentTypeError(f"{value!r}: give a queue name, as NAME or NAME=WEIGHT")
    try:
        weight = int(weight_text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: the weight {weight_text!r} is not an integer; write NAME=WEIGHT with WEIGHT from 1 to "
            f"{MAX_WEIGHT}"
        ) from None
    if not 1 <= weight <= MAX_WEIGHT:
        raise argparse.ArgumentTypeError(f"{value!r}: the weight must be from 1 to {MAX_WEIGHT}, not {weight}")
    return name, weight


def build_parser() -> argparse.ArgumentParser:
    """ajworker's command line; separate from main() so tests can parse without starting anything."""
    p = options.OneLineParser(prog="ajworker", description="Run ajq tasks in a pool of forked processes.")
    p.add_argument("app", help="the Router to serve, as module:attribute (e.g. myapp.tasks:router)")
    p.add_argument("--broker", help=f"broker endpoint (env AJQ_BROKER; default {DEFAULT_ENDPOINT})")
    p.add_argument("--procs", type=parse_procs, default="auto", help="processes: a number or 'auto' (default)")
    p.add_argument(
        "--queue",
        action="append",
        dest="queues",
        type=parse_queue,
        metavar="NAME[=WEIGHT]",
        help=f"queue to serve, with a weight from 1 to {MAX_WEIGHT} (default 1); repeatable; default {DEFAULT_QUEUE}",
    )
    p.add_argument("--strict", action="store_true", help="strict priority: serve queues in the order given")
    p.add_argument(
        "--prefetch", type=options.count_arg(minimum=-1, example="8", what="-1 (adaptive), 0 or more"), default=-1,
        help="tasks held ready beyond --procs (default: adaptive)",
    )  # fmt: skip
    p.add_argument(
        "--shutdown-timeout", type=options.seconds_arg(zero_ok=True, example="8"), default=8.0,
        help="seconds running tasks get on SIGTERM",
    )  # fmt: skip
    p.add_argument("--retry", choices=sorted(BY_NAME), help="retry policy (default: the router's, else 10m)")
    p.add_argument(
        "--max-tasks-per-child",
        type=options.count_arg(minimum=0, example="1000", what="0 (no limit) or more"),
        default=0,
        metavar="N",
        help="replace a process after N tasks",
    )
    p.add_argument(
        "--max-memory-per-child",
        type=options.seconds_arg(zero_ok=True, example="512", unit="megabytes"),
        default=0.0,
        metavar="MB",
        help="replace a process whose memory (RSS) is over MB after a task; it finishes the task first",
    )
    p.add_argument("--curve-secret", help="our NAME.key_secret, for a broker that needs keys (env AJQ_CURVE_SECRET)")
    p.add_argument("--curve-server", help="the broker's public broker.key (env AJQ_CURVE_SERVER)")
    p.add_argument("--verify-key", help="a NAME.verify file: run only tasks signed with its NAME.sign")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> WorkerConfig:
    """The WorkerConfig the parsed arguments describe; WorkerConfigError if they do not fit together."""
    queues: list[tuple[str, int]] = args.queues or [(DEFAULT_QUEUE, 1)]
    extra: dict[str, Any] = {"broker": args.broker} if args.broker else {}
    return WorkerConfig(
        procs=args.procs,
        queues=tuple(name for name, _ in queues),
        weights=tuple(weight for _, weight in queues),
        strict=args.strict,
        prefetch=args.prefetch,
        shutdown_timeout_s=args.shutdown_timeout,
        max_tasks_per_child=args.max_tasks_per_child,
        max_memory_per_child_mb=args.max_memory_per_child,
        curve_secret=args.curve_secret,
        curve_server=args.curve_server,
        verify_key=args.verify_key,
        **extra,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse, load the app, run the supervisor until a signal stops it; 2 on a configuration error."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s ajworker[%(process)d] %(levelname)s %(message)s",
    )
    try:
        config = config_from_args(args)
        router = load_router(args.app)
        from ajq.worker.supervisor import Supervisor

        retry = by_name(args.retry) if args.retry else (router.retry or RETRY_DEFAULT)
        supervisor = Supervisor(config, router, retry)
    except WorkerError as exc:
        print(f"ajworker: {exc}", file=sys.stderr)
        return 2
    supervisor.install_signals()
    try:
        supervisor.run()
    except BrokerRefused as exc:
        print(f"ajworker: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("ajq.worker").info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
