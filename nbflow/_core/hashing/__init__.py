"""Deterministic hashing of task inputs and task source, for cache keys that survive restarts.

Three modules, one way down: ``encoder`` hashes the built-in atoms and containers; ``types`` every
other kind of value (and functions and classes through ``source``, which hashes code). The encoder
reaches the other types through the chooser installed here.
"""

from nbflow._core.hashing import encoder, types

encoder.use_chooser(types.choose)
