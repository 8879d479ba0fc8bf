"""The services a run talks to (store, cache, limits); they import the core, never the engine."""
