"""The composition root: the one place that builds services and attaches them to a runtime.

The engine runs flows against whatever a ``Runtime`` holds (``cache``, ``store``, ``limits`` or
None); the services know nothing of the engine. ``build_runtime`` joins them as the settings say,
and is installed as the builder of the process's default runtime when ``nbflow`` is imported.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from nbflow._engine import defaults

if TYPE_CHECKING:
    from nbflow._engine.runtime import Runtime
    from nbflow._services.limits.service import LimitService

__all__ = ["build_runtime", "limits_for"]


def build_runtime(settings: Any = None, **kwargs: Any) -> Runtime:
    """A runtime wired with every service the settings turn on (store, cache, limits).

    ``kwargs`` go to ``Runtime`` (``clock=``, ``subscribers=``, ``console=``). Services are imported
    here, on first use, so that ``import nbflow`` stays cheap.
    """
    from nbflow._app.crash_hooks import call_when_a_run_starts
    from nbflow._app.reruns import rerun
    from nbflow._engine.runtime import Runtime
    from nbflow._services.cache.service import ResultCache
    from nbflow._services.limits.service import attach as attach_limits

    runtime = Runtime(settings, **kwargs)
    runtime.rerun = rerun
    runtime.cache = ResultCache.attach(runtime)  # always on: it only costs something when used
    if runtime.settings.store_enabled:
        from nbflow._services.store.service import Store

        store = Store.attach(runtime)
        call_when_a_run_starts(runtime.bus, store.path, store.owed)
    attach_limits(runtime)  # opens nothing until used
    # The notebook adapter, when `%load_ext nbflow` loaded it, watches every runtime's runs. Looked
    # up, never imported: the adapters sit above this layer.
    notebook = sys.modules.get("nbflow.jupyter._session")
    if notebook is not None:
        notebook.attach(runtime)
    return runtime



def limits_for(runtime: Runtime | None = None) -> LimitService:
    """The limit service of ``runtime`` (default: the current one), attached on first use (a
    runtime built without this module, ``Runtime(...)``, has none until then)."""
    from nbflow._engine.runtime import get_runtime
    from nbflow._services.limits.service import LimitService, attach

    runtime = runtime or get_runtime()
    limits = runtime.limits
    return limits if isinstance(limits, LimitService) else attach(runtime)


defaults.install(build_runtime)
