"""Per-endpoint logs and metrics."""
