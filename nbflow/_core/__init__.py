"""The pure core: stdlib, pydantic and croniter only; imports nothing else of nbflow but its errors."""
