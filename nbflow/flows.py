"""Flows, where Prefect users look for them."""

from nbflow._engine.flow import Flow, flow

__all__ = ["Flow", "flow"]
