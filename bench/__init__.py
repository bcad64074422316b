"""Benchmarks for ajq against real broker and worker processes: `python -m bench.run`."""
