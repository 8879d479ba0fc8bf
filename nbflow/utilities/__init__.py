"""Helpers Prefect users find under ``prefect.utilities``."""
