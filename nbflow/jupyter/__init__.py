"""Jupyter adapters: the %%flow magics and the run monitor widget (each imported when first used)."""
