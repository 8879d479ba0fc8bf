"""The composition root: the only layer that sees both the engine and the services."""
