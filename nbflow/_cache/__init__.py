"""The result cache: persisted task results on diskcache, cache keys from policies, and reruns."""
