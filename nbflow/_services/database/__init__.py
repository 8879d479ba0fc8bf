"""The home database, ``$NBFLOW_HOME/nbflow.db``: opening it safely and its schema, shared by the store and the limits."""
