"""`ajbroker`: run the broker in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import sys

from ajq.broker.config import BrokerConfig
from ajq.broker.errors import AjbrokerError
from ajq.broker.peers import DEFAULT_MAX_PEERS
from ajq.protocol import options
from ajq.protocol.defaults import DEFAULT_ENDPOINT
from ajq.protocol.limits import HARD_BATCH, HARD_FRAME_BYTES, KIB, MIB


def parse(argv: list[str] | None) -> BrokerConfig:
    p = options.OneLineParser(prog="ajbroker", description="The ajq broker: durable queues on ZeroMQ and SQLite.")
    p.add_argument("--bind", help=f"endpoint to listen on (env AJQ_BROKER; default {DEFAULT_ENDPOINT})")
    p.add_argument("--db", help="SQLite file (env AJQ_DB; default ./ajq.db)")
    p.add_argument("--synchronous", help="FULL (default: every commit on disk), EXTRA, NORMAL or OFF")
    p.add_argument(
        "--heartbeat", type=options.seconds_arg(example="1"), dest="heartbeat_s",
        help="seconds between heartbeats (default 1)",
    )  # fmt: skip
    p.add_argument(
        "--lease-bound", type=options.seconds_arg(example="3"), dest="lease_bound_s",
        help="seconds a worker's tasks run on without contact (default 3 heartbeats)",
    )  # fmt: skip
    p.add_argument(
        "--lease-grace", type=options.seconds_arg(zero_ok=True, example="2"), dest="lease_grace_s",
        help="seconds past max_run_time (default 2)",
    )  # fmt: skip
    p.add_argument(
        "--max-db-mb", type=options.count_arg(minimum=1, example="512"), dest="max_db_mb",
        help="cap the database at this size (MB)",
    )  # fmt: skip
    p.add_argument(
        "--max-queues", type=options.count_arg(minimum=1, example="1000"), dest="max_queues",
        help="queues that may exist at once (default 1000)",
    )  # fmt: skip
    p.add_argument(
        "--max-workers", type=options.count_arg(minimum=1, example="10000"), dest="max_workers",
        help="workers registered at once (default 10000)",
    )  # fmt: skip
    p.add_argument(
        "--max-waits", type=options.count_arg(minimum=1, example="100000"), dest="max_waits",
        help="client WAITs parked at once (default 100000)",
    )  # fmt: skip
    p.add_argument(
        "--max-peers", type=options.count_arg(minimum=1, example="10000"), dest="max_peers",
        help=f"connections admitted at once (default {DEFAULT_MAX_PEERS}, or what the file descriptor limit allows)",
    )  # fmt: skip
    p.add_argument(
        "--max-frame-mb", type=options.count_arg(minimum=1, maximum=HARD_FRAME_BYTES // MIB - 1, example="8"),
        dest="max_frame_mb", help="largest message, in MiB (default 8)",
    )  # fmt: skip
    p.add_argument(
        "--max-payload-kb", type=options.count_arg(minimum=1, maximum=HARD_FRAME_BYTES // 2 // KIB, example="1024"),
        dest="max_payload_kb", help="largest task payload or result, in KiB; at most half a frame (default 1024)",
    )  # fmt: skip
    p.add_argument(
        "--max-batch", type=options.count_arg(minimum=1, maximum=HARD_BATCH, example="10000"), dest="max_batch",
        help="most tasks in one SUBMIT, outcomes in one RESULTS, tasks in one DELIVER (default 10000)",
    )  # fmt: skip
    p.add_argument(
        "--curve-secret", help="the broker's NAME.key_secret: encrypt and authenticate (env AJQ_CURVE_SECRET)"
    )
    p.add_argument(
        "--authorized-keys", help="DIR of admitted public keys in clients/, workers/, admin/ (env AJQ_AUTHORIZED_KEYS)"
    )
    p.add_argument("--insecure", action="store_true", help="listen beyond this host without keys (anyone may connect)")
    p.add_argument("--events", dest="events_bind", help="endpoint for task events (default: --bind port + 1)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s ajbroker %(levelname)s %(message)s",
    )
    return BrokerConfig.from_env(
        bind=args.bind,
        db=args.db,
        synchronous=args.synchronous,
        heartbeat_s=args.heartbeat_s,
        lease_bound_s=args.lease_bound_s,
        lease_grace_s=args.lease_grace_s,
        events_bind=args.events_bind,
        max_db_mb=args.max_db_mb,
        max_queues=args.max_queues,
        max_workers=args.max_workers,
        max_waits=args.max_waits,
        max_peers=args.max_peers,
        max_frame_mb=args.max_frame_mb,
        max_payload_kb=args.max_payload_kb,
        max_batch=args.max_batch,
        curve_secret=args.curve_secret,
        authorized_keys=args.authorized_keys,
        insecure=args.insecure or None,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        from ajq.broker.server import Server

        config = parse(argv)
        server = Server(config)
    except AjbrokerError as exc:
        print(f"ajbroker: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # zmq bind errors and the like: one clear line, no traceback
        print(f"ajbroker: cannot start: {exc}", file=sys.stderr)
        return 2
    server.install_signals()
    log = logging.getLogger("ajq.broker")
    server.run(
        on_ready=lambda ep: log.info(
            "listening on %s (events on %s), database %s", ep, server.broker.events_endpoint, config.db
        )
    )
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
