"""The engine: flow and task runs, their contexts and drivers; imports the core only."""
