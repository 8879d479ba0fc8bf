"""Flows, where Prefect users look for them."""

from nbflow._flows import Flow, flow

__all__ = ["Flow", "flow"]
