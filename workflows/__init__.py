"""Temporal workflows: deterministic orchestration of the activities, no I/O."""
