"""`ajworker`: serve queues with a pool of forked processes running the app's handlers."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from worker.config import WorkerConfig
from worker.cpus import available_cpus
from worker.errors import ConfigError, WorkerError
from worker.retry import BY_NAME, RETRY_DEFAULT, by_name
from worker.router import Router


def load_router(spec: str) -> Router:
    """Import 'package.module:attribute' (the current directory is on the path) and check it."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"app {spec!r}: write it as module:attribute, e.g. myapp.tasks:router")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    router = getattr(module, attr, None)
    if not isinstance(router, Router):
        raise ConfigError(f"{spec!r} is {type(router).__name__}, not a worker.Router")
    return router


def parse_procs(value: str) -> int:
    if value == "auto":
        return available_cpus()
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give a number or 'auto'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: need at least 1")
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ajworker", description="Run ajq tasks in a pool of forked processes.")
    p.add_argument("app", help="the Router to serve, as module:attribute (e.g. myapp.tasks:router)")
    p.add_argument("--broker", help="broker endpoint (env AJQ_BROKER; default tcp://127.0.0.1:7480)")
    p.add_argument("--procs", type=parse_procs, default="auto", help="processes: a number or 'auto' (default)")
    p.add_argument("--queue", action="append", dest="queues", help="queue to serve (repeatable; default DEFAULT)")
    p.add_argument("--prefetch", type=int, default=-1, help="tasks held ready beyond --procs (default: adaptive)")
    p.add_argument("--shutdown-timeout", type=float, default=8.0, help="seconds running tasks get on SIGTERM")
    p.add_argument("--retry", choices=sorted(BY_NAME), help="retry policy (default: the router's, else 10m)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s ajworker[%(process)d] %(levelname)s %(message)s",
    )
    try:
        config = WorkerConfig(
            procs=args.procs,
            queues=tuple(args.queues or ["DEFAULT"]),
            prefetch=args.prefetch,
            shutdown_timeout_s=args.shutdown_timeout,
            **({"broker": args.broker} if args.broker else {}),
        )
        router = load_router(args.app)
        from worker.supervisor import Supervisor

        retry = by_name(args.retry) if args.retry else (router.retry or RETRY_DEFAULT)
        supervisor = Supervisor(config, router, retry)
    except WorkerError as exc:
        print(f"ajworker: {exc}", file=sys.stderr)
        return 2
    supervisor.install_signals()
    supervisor.run()
    logging.getLogger("ajq.worker").info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
