"""ajbroker: owns the queues. One ZeroMQ ROUTER loop over a SQLite (WAL) store."""
