"""ajq and its peers (Celery, Dramatiq, RQ, Huey, arq) on the same workloads: `python -m bench.peers`.

`body` is the one task body every system runs, and the ledger it writes; `apps/` holds what each
system's workers import; `systems/` drives each system from the bench; `workloads` runs the
workloads on any of them; `tables` prints the figures.
"""
