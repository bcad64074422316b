"""What each system's workers import: the one task, named `body`, calling bench.peers.body.run.

Backends are found through the environment the bench sets before it starts a worker
($AJQ_PEERS_REDIS_URL, $AJQ_PEERS_SQLITE); the bench's own side builds its clients with the
make_* functions here, so both sides declare the task the same way.
"""

import os

REDIS_URL_ENV = "AJQ_PEERS_REDIS_URL"
SQLITE_ENV = "AJQ_PEERS_SQLITE"
QUEUE = "bench"


def redis_url() -> str:
    """The Redis URL a worker was started with."""
    return os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0")
