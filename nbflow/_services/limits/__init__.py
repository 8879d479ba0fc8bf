"""Concurrency limits: named slots with leases, shared by every process of a home."""
