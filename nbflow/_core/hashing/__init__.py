"""Deterministic hashing of task inputs and task source, for cache keys that survive restarts."""
