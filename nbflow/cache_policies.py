"""Cache policies: what a task's cache key is made of (Prefect's names and ``compute_key`` signature).

The public face: the names live in ``nbflow._core.cache_policies``.
"""

from nbflow._core.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    NONE,
    RUN_ID,
    TASK_SOURCE,
    CacheKeyFnPolicy,
    CachePolicy,
    CompoundCachePolicy,
    FlowParameters,
    Inputs,
    NoCache,
    RunId,
    TaskSource,
)

__all__ = [
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "DEFAULT",
    "FLOW_PARAMETERS",
    "FlowParameters",
    "INPUTS",
    "Inputs",
    "NONE",
    "NO_CACHE",
    "NoCache",
    "RUN_ID",
    "RunId",
    "TASK_SOURCE",
    "TaskSource",
]
