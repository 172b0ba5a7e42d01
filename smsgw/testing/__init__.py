"""Helpers for tests and benchmarks that need real servers (never used by the daemon itself)."""
