"""The monitor's static stand-in (nbconvert HTML, GitHub, notebooks reopened without widget state)."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from nbflow import flow, task
from nbflow._core.events import RunCreated
from nbflow._core.settings import Settings
from nbflow._engine.runtime import Runtime, use_runtime
from nbflow.jupyter._monitor_model import MonitorModel
from nbflow.jupyter._static import layered_layout, render_html, render_svg, render_text

SVG = "{http://www.w3.org/2000/svg}"


@task
def extract(i: int) -> int:
    return i


@task(name="<b>transform</b>")
def transform(x: int) -> int:
    if x == 2:
        raise KeyError("<missing column>")
    return x


@flow(name="etl")
def etl() -> None:
    for i in range(3):
        transform.submit(extract.submit(i))


@pytest.fixture
def snapshot(tmp_path: Path) -> dict[str, Any]:
    """The final snapshot of a real run: six task runs, one of them failed."""
    rt = Runtime(Settings(home=str(tmp_path / "home"), store_enabled=False), console=False)
    models: list[MonitorModel] = []

    def on_event(event: Any) -> None:
        if event.__class__ is RunCreated and event.run.kind == "flow":
            models.append(MonitorModel(event.run.id))
            models[-1].seed(event.run)
            rt.bus.subscribe(models[-1].feed)

    rt.bus.subscribe(on_event)
    with use_runtime(rt):
        etl()
    return models[0].snapshot(final=True)


def svg_of(html: str) -> ET.Element:
    data = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    assert data, "no embedded SVG"
    return ET.fromstring(base64.b64decode(data.group(1)))


def test_the_summary_names_the_run_its_counts_and_its_failure(snapshot: dict[str, Any]) -> None:
    html = render_html(snapshot)

    assert f'data-nbflow-static="{snapshot["run"]["id"]}"' in html  # the live widget hides it by this
    assert ">etl</b>" in html and snapshot["run"]["name"] in html and ">Completed</span>" in html
    assert "Completed 5" in html and "Failed 1" in html and "6/6 task runs finished" in html
    assert "Failed (1)" in html and "KeyError" in html and "in transform" in html  # the traceback


def test_names_and_messages_are_escaped_not_interpreted(snapshot: dict[str, Any]) -> None:
    html = render_html(snapshot)

    assert "<b>transform</b>" not in html and "&lt;b&gt;transform&lt;/b&gt;" in html
    assert "<missing column>" not in html and "&lt;missing column&gt;" in html
    assert "<script" not in html


def test_the_graph_is_an_svg_with_a_box_per_task_run_and_an_arrow_per_edge(snapshot: dict[str, Any]) -> None:
    svg = svg_of(render_html(snapshot))

    boxes = [g for g in svg.iter(f"{SVG}g") if g.find(f"{SVG}title") is not None]
    assert len(boxes) == 6
    titles = sorted(g.find(f"{SVG}title").text or "" for g in boxes)  # type: ignore[union-attr]
    assert any(t.startswith("<b>transform</b>-3: Failed") for t in titles)
    arrows = [p for p in svg.iter(f"{SVG}path") if p.get("marker-end")]
    assert len(arrows) == 3
    assert render_svg({**snapshot, "graph": {"nodes": [], "edges": []}}) == ""  # no task runs: no picture


def test_the_text_summary_is_one_line_for_terminals(snapshot: dict[str, Any]) -> None:
    text = render_text(snapshot)
    assert re.fullmatch(r"Flow run '[\w-]+' \(etl\): Completed in [\d.]+ m?s · 6 task runs: Completed 5, Failed 1", text)


def test_layers_run_left_to_right_and_nodes_never_overlap() -> None:
    nodes = ["a", "b", "c", "d"]
    sizes = {n: (70.0, 26.0) for n in nodes}
    pos, width, height = layered_layout(nodes, [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], sizes)

    assert pos["a"][0] < pos["b"][0] == pos["c"][0] < pos["d"][0]
    assert abs(pos["b"][1] - pos["c"][1]) >= 26.0
    assert all(0 < x < width and 0 < y < height for x, y in pos.values())


def test_a_very_long_chain_lays_out_without_recursion() -> None:
    nodes = [f"n{i}" for i in range(3000)]
    pos, _, _ = layered_layout(nodes, list(zip(nodes, nodes[1:])), {n: (70.0, 26.0) for n in nodes})
    assert pos["n0"][0] < pos["n2999"][0]
