"""The run store: flow runs, task runs, state history, logs and edges in ``$NBFLOW_HOME/nbflow.db``."""
