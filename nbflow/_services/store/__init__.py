"""The run store: every flow and task run in one SQLite file under the home."""
