"""The monitor's wire protocol is written once, in nbflow/jupyter/protocol.json: the front-end's types
(extension/src/protocol.ts) are generated from it, and every message the kernel side really builds
during monitored flow runs validates against it, using every key it defines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from nbflow import cache_policies, flow, get_run_logger, task
from nbflow._app.wiring import build_runtime
from nbflow._core.events import RunCreated
from nbflow._core.settings import Settings
from nbflow._engine.runtime import Runtime, use_runtime
from nbflow.jupyter import _protocol
from nbflow.jupyter._monitor_model import PROTOCOL, MonitorModel
from nbflow.jupyter._static import PALETTE

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = _protocol.SCHEMA
DEFS = SCHEMA["$defs"]


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{name}"})


def test_the_schema_is_valid_and_says_what_every_key_means():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for name, definition in DEFS.items():
        assert definition.get("description"), f"{name} has no description"
        for key, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{key} has no description"
    assert PROTOCOL == SCHEMA["version"]


def test_protocol_ts_is_generated_from_the_schema():
    written = (ROOT / "extension" / "src" / "protocol.ts").read_text(encoding="utf-8")
    assert written == _protocol.typescript(), (
        "extension/src/protocol.ts is not what protocol.json says: regenerate it with "
        "`python -m nbflow.jupyter._protocol > extension/src/protocol.ts` (then rebuild the bundle)"
    )


# --- what the kernel really sends --------------------------------------------------------------------

class Monitors:
    """Two models per top-level flow run (one per run, one collapsed into groups), subscribed before
    the run starts as the widget's is; tasks take deltas mid-run as the widget's timer does."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.models: list[MonitorModel] = []
        self.messages: list[dict[str, Any]] = []
        runtime.bus.subscribe(self._on_event)

    def _on_event(self, event: Any) -> None:
        if event.__class__ is RunCreated and event.run.kind == "flow" and event.run.parent_flow_run_id is None:
            for collapse_at in (100, 3):
                model = MonitorModel(event.run.id, collapse_at=collapse_at)
                model.seed(event.run)
                self.runtime.bus.subscribe(model.feed)
                self.models.append(model)

    def take_deltas(self) -> None:
        for model in self.models:
            delta = model.take_delta()
            if delta is not None:
                self.messages.append(delta)

    def everything(self) -> Iterator[dict[str, Any]]:
        """Every message the models make: deltas, keyframes, final pictures, detail replies."""
        yield from self.messages
        for model in self.models:
            self.messages.append(model.take_delta() or {"kind": "delta", "seq": 0, "now": 0.0})
            yield self.messages[-1]
            yield model.snapshot()
            final = model.snapshot(final=True)
            yield final
            ids = [node["id"] for node in final["graph"]["nodes"]] + [model.flow_run_id, "no-such-id"]
            for node_id in ids:
                detail = model.detail(node_id)
                yield {"kind": "detail", "id": node_id, "detail": detail}
                for member in (detail or {}).get("members", []):
                    yield {"kind": "detail", "id": member["id"], "detail": model.detail(member["id"])}


@pytest.fixture
def monitors(tmp_path: Path) -> Iterator[Monitors]:
    runtime = build_runtime(Settings(home=str(tmp_path / "home"), store_enabled=False), console=False)
    with use_runtime(runtime):
        yield Monitors(runtime)


def run_flows(monitors: Monitors) -> None:
    """Flow runs that make every kind of message: maps and edges, failures with tracebacks, retries,
    cache hits, subflows, log bursts, a timeout, and a flow run that fails."""
    attempts: list[int] = []

    @task
    def load(i: int) -> int:
        return i

    @task
    def double(x: int) -> int:
        monitors.take_deltas()  # mid-run, as the widget's timer thread does
        return 2 * x

    @task
    def boom(x: int) -> int:
        raise ValueError(f"bad row {x}\nsecond line")

    @task(retries=1, retry_delay_seconds=0)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("try again")
        return "ok"

    @task(cache_policy=cache_policies.INPUTS, persist_result=True)
    def lookup(key: str) -> str:
        return key.upper()

    @task
    def chatty() -> None:
        logger = get_run_logger()
        for i in range(150):  # more lines than one message carries: some are skipped
            logger.info("line %d", i)
        logger.warning("careful:\nmulti-line")

    @task(timeout_seconds=0.05)
    def slow() -> None:
        time.sleep(0.5)

    @flow
    def inner(n: int) -> int:
        return sum(double.map(load.map(range(n))).result())

    @flow
    def pipeline() -> None:
        doubled = double.map(load.map(range(4)))
        boom(3, return_state=True)
        boom.submit(4, wait_for=doubled).wait()
        flaky()
        lookup("a")
        lookup("a")  # a cache hit
        chatty()
        monitors.take_deltas()
        slow(return_state=True)
        inner(2)
        inner(3)

    @flow
    def broken() -> None:
        load(1)
        raise RuntimeError("the flow itself failed")

    pipeline()
    with pytest.raises(RuntimeError):
        broken()


def _keys_used(node: dict[str, Any], value: Any, used: set[tuple[str, str]], where: str = "") -> None:
    """Record (definition, key) for every object key of ``value`` that the schema ``node`` defines."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        _keys_used(DEFS[name], value, used, name)
    elif "anyOf" in node:
        for option in node["anyOf"]:
            if jsonschema.Draft202012Validator({**SCHEMA, **option}).is_valid(value):
                _keys_used(option, value, used, where)
                break
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in node.get("properties", {}):
                used.add((where, key))
                _keys_used(node["properties"][key], item, used, f"{where}.{key}")
            elif isinstance(node.get("additionalProperties"), dict):
                _keys_used(node["additionalProperties"], item, used, where)
    elif isinstance(value, list):
        items = node.get("prefixItems") or [node.get("items")] * len(value)
        for sub, item in zip(items, value):
            if isinstance(sub, dict):
                _keys_used(sub, item, used, where)


def test_every_message_of_monitored_runs_validates_and_uses_every_key(monitors):
    run_flows(monitors)
    kinds = {"snapshot": "Snapshot", "delta": "Delta", "detail": "DetailReply"}
    validators = {kind: validator(name) for kind, name in kinds.items()}
    used: set[tuple[str, str]] = set()
    seen: set[str] = set()
    count = 0
    for message in monitors.everything():
        errors = list(validators[message["kind"]].iter_errors(message))
        assert not errors, f"{message['kind']} message does not match protocol.json: {errors[0].message} at " \
                           f"{list(errors[0].absolute_path)}"
        _keys_used({"$ref": f"#/$defs/{kinds[message['kind']]}"}, message, used)
        seen.add(message["kind"])
        count += 1
    assert seen == set(kinds) and count > 50
    # The schema describes what the kernel sends, no more: each key it defines was sent.
    for name in ("RunHeader", "GraphNode", "Graph", "NodeState", "Member", "Detail", "Snapshot", "Delta", "DetailReply"):
        unused = set(DEFS[name]["properties"]) - {key for where, key in used if where == name}
        assert not unused, f"protocol.json defines {name} keys no message used: {sorted(unused)}"


def test_the_widget_traits_and_its_own_messages_match(monitors):
    """What RunMonitor itself sends: its palette and snapshot traits, detail replies, Graphviz."""
    from nbflow.jupyter._assets import graphviz_source
    from nbflow.jupyter._widget import RunMonitor

    run_flows(monitors)
    model = monitors.models[0]
    widget = RunMonitor.from_model(model)
    sent: list[dict[str, Any]] = []
    widget._send_custom = sent.append  # the comm's side of it: what goes on the wire
    try:
        assert not list(validator("Palette").iter_errors(widget.palette))
        assert not list(validator("Snapshot").iter_errors(widget.snapshot))
        requests = [{"kind": "detail", "id": model.flow_run_id}, {"kind": "detail", "id": "nope"}]
        for request in requests:
            assert validator("FrontEndMessage").is_valid(request)
            widget._on_front_end_message(widget, request, [])
        assert [m["kind"] for m in sent] == ["detail", "detail"]
        for message in sent:
            assert not list(validator("KernelMessage").iter_errors(message))
        graphviz: list[dict[str, Any]] = []
        widget.send = graphviz.append
        widget._on_front_end_message(widget, {"kind": "graphviz?"}, [])
        if graphviz_source() is not None:  # the bundle was built (it has graphviz.js)
            assert len(graphviz) == 1 and validator("GraphvizSource").is_valid(graphviz[0])
    finally:
        widget.close()
    assert widget.palette == PALETTE


def test_a_message_that_breaks_the_protocol_is_caught():
    """The checks can fail: a node state with an unknown key, a wrong type, a missing key."""
    assert not validator("NodeState").is_valid({"s": "Completed", "state": "Completed"})
    assert not validator("NodeState").is_valid({"t": "DONE"})
    assert not validator("RunHeader").is_valid({"id": "x"})
    assert not validator("LogEntry").is_valid([1, 2.0, "id", "name", "state", 20])
