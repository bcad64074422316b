"""Fault tests: real processes, injected faults, and counts of what was acknowledged and what ran."""
