"""The operator commands' work: enqueue, backfill, replay, provision, status, schedule, and
what they share (checking a job before it is sent, reading inputs, sending, tables)."""

__all__: list[str] = []
