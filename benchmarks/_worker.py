"""Entry point of one fresh benchmark process: `_worker.py FRAMEWORK JOB OUT.json PARAMS_JSON`.

Runs one job of `_workloads_<FRAMEWORK>.py` (or, for FRAMEWORK "plugin", `run()` of the
benchmarks module named JOB) and writes its result, or why it was skipped or
failed, to OUT.json. Its own stdout/stderr are discarded by the harness.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import traceback
from pathlib import Path


def main() -> int:
    framework, job, out_path, params = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    from _common import Skip

    payload: dict = {}
    code = 0
    try:
        if framework == "plugin":
            # A benchmarks/<job>.py module of another feature: `run() -> list[dict]`.
            payload["result"] = {"rows": importlib.import_module(job).run()}
        else:
            module = importlib.import_module(f"_workloads_{framework}")
            payload["result"] = getattr(module, job)(**json.loads(params))
    except Skip as exc:
        payload["skipped"] = str(exc)
    except BaseException as exc:  # report, never hang the harness
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        payload["error"] = f"{type(exc).__name__}: {exc}"
        payload["traceback"] = "".join(tb[-6:])[-4000:]
        code = 1
    # ru_maxrss is in KiB on Linux: the peak of this process alone, exact where polling is coarse.
    payload["maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out_path.write_text(json.dumps(payload))
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
