"""The database schema. `user_version` names it; a file made by another version is refused,
except the older versions `UPGRADES_FROM` lists, which the schema script below brings up to date."""

from __future__ import annotations

SCHEMA_VERSION = 7
UPGRADES_FROM = frozenset({3, 4, 5, 6})  # 4: the cancels table (CREATE ... IF NOT EXISTS); 5-7: columns
# Columns added since a version: (version that added it, table, column definition), for ALTER TABLE.
ADDED_COLUMNS = (
    (5, "queues", "backoff_s REAL NOT NULL DEFAULT 1.0"),
    (6, "tasks", "signature BLOB"),
    (7, "tasks", "owner TEXT"),  # the public key (z85) that submitted the task, with CURVE keys
)

# Waiting states, as an OR of equalities: SQLite evaluates an IN list of three constants on every
# insert into the partial index far more slowly (measured: 25% of the insert rate). Queries that
# should use the index must repeat this text exactly, so the planner can match it.
WAITING = "(state = 'new' OR state = 'retry' OR state = 'scheduled')"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    max_concurrent INTEGER NOT NULL,
    max_run_time_s REAL NOT NULL,
    max_tries INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    retention_s REAL NOT NULL,
    dead_max INTEGER NOT NULL,
    dead_retention_s REAL NOT NULL,
    backoff_s REAL NOT NULL DEFAULT 1.0
);
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    type TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    ready_at REAL NOT NULL,
    deadline REAL,
    token INTEGER,
    lease_expires REAL,
    worker TEXT,
    started_at REAL,
    finished_at REAL,
    result BLOB,
    last_error TEXT,
    unique_key TEXT,
    parents BLOB,
    load_results INTEGER NOT NULL DEFAULT 0,
    signature BLOB,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS tasks_waiting ON tasks(queue, ready_at, seq) WHERE {WAITING};
CREATE INDEX IF NOT EXISTS tasks_active ON tasks(queue) WHERE state = 'active';
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks(queue, state, finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS deps (
    parent TEXT NOT NULL,
    child TEXT NOT NULL,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deps_child ON deps(child);
CREATE TABLE IF NOT EXISTS uniques (
    key TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uniques_task ON uniques(task_id);
CREATE TABLE IF NOT EXISTS cancels (
    task_id TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    cron TEXT NOT NULL,
    type TEXT NOT NULL,
    payload BLOB NOT NULL,
    queue TEXT NOT NULL,
    next_run REAL NOT NULL,
    last_run REAL,
    last_task TEXT,
    created_at REAL NOT NULL
);
"""

TASK_COLUMNS = (
    "id, queue, type, payload, state, tries, created_at, ready_at, deadline, token, lease_expires, worker, "
    "started_at, finished_at, result, last_error, unique_key, parents, load_results, seq, owner"
)
