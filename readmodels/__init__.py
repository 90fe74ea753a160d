"""The read side: read-model tables and their projections, the projection engine that keeps
them up to date exactly once, checkpoints and dead letters, the query bus and its Redis cache."""
