"""Settings, read once from ``NBFLOW_*`` environment variables into a validated pydantic model.

pydantic is imported only when settings are first needed (the first run or CLI command), so that
``import nbflow`` stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbflow.exceptions import ConfigurationError

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["Settings", "load_settings", "ENV_PREFIX"]

ENV_PREFIX = "NBFLOW_"

# name: (type, default, help). The one list of settings: the model, the docs and `nbflow config view`
# are derived from it.
SETTINGS_SPEC: dict[str, tuple[Any, Any, str]] = {
    "home": (Path, Path("~/.nbflow"), "Folder for the run store (nbflow.db), the result cache and its locks."),
    "logging_level": (str, "INFO", "Lowest level of run log lines shown on the console and stored."),
    "store_enabled": (bool, True, "Record runs, states, logs and edges in $NBFLOW_HOME/nbflow.db."),
    "results_persist": (bool, True, "Persist task results in the result cache by default (for reruns)."),
    "cache_size_limit": (int, 10 * 1024**3, "Result cache size in bytes; least recently used go first."),
    "task_runner_max_workers": (int, 0, "Threads of the default task runner (0: min(32, cores + 4))."),
    "heartbeat_seconds": (float, 10.0, "How often a running flow run records that its process is alive."),
    "crash_after_seconds": (float, 90.0, "A run silent for this long, on another host, is Crashed."),
    "concurrency_lease_seconds": (float, 30.0, "A held concurrency slot is freed this long after its holder dies."),
    "monitor_enabled": (bool, True, "Show the live run monitor under notebook cells that run flows."),
}


def _model() -> type[BaseModel]:
    from pydantic import ConfigDict, create_model, field_validator

    def _expand_home(cls: Any, value: Path) -> Path:
        return Path(os.path.expandvars(str(value))).expanduser().absolute()

    def _level(cls: Any, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("use one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    def _not_negative(cls: Any, value: float) -> float:
        if not value >= 0:
            raise ValueError("must be 0 or more")
        return value

    def _positive(cls: Any, value: float) -> float:
        if not value > 0:  # also refuses NaN; 0 would make heartbeats and lease renewals spin
            raise ValueError("must be more than 0")
        return value

    fields = {name: (type_, default) for name, (type_, default, _help) in SETTINGS_SPEC.items()}
    return create_model(  # type: ignore[call-overload, no-any-return]
        "Settings",
        __config__=ConfigDict(frozen=True, extra="forbid", validate_default=True),
        __validators__={
            "_home": field_validator("home")(classmethod(_expand_home)),
            "_level": field_validator("logging_level")(classmethod(_level)),
            "_not_negative": field_validator("cache_size_limit", "task_runner_max_workers")(classmethod(_not_negative)),
            "_positive": field_validator(
                "heartbeat_seconds", "crash_after_seconds", "concurrency_lease_seconds"
            )(classmethod(_positive)),
        },
        **fields,
    )


_MODEL: type[BaseModel] | None = None


def Settings(**values: Any) -> BaseModel:  # noqa: N802 - reads like the model it builds
    """Build a validated settings object from keyword values (defaults fill the rest)."""
    global _MODEL  # the model class is built once, lazily; it holds no state
    if _MODEL is None:
        _MODEL = _model()
    return _MODEL(**values)


def load_settings(environ: Mapping[str, str] | None = None) -> Any:
    """Settings from ``NBFLOW_<NAME>`` variables; a bad value raises one clear ``ConfigurationError``."""
    environ = os.environ if environ is None else environ
    raw = {
        name: environ[ENV_PREFIX + name.upper()]
        for name in SETTINGS_SPEC
        if ENV_PREFIX + name.upper() in environ
    }
    from pydantic import ValidationError

    try:
        return Settings(**raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{str(err['loc'][0]).upper()}={raw.get(str(err['loc'][0]))!r}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"Invalid nbflow setting: {problems}. Fix or unset the variable.") from None
