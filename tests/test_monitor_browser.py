"""The live monitor in a real JupyterLab, seen by a real headless Chromium (Debian's, via Playwright).

JupyterLab runs on 127.0.0.1 with a throw-away token, root dir, settings and NBFLOW_HOME. The test
opens a notebook, runs a flow with a few slow tasks and one that fails, and watches the graph while
the run goes on. Screenshots land in test-artifacts/ (mid-run and finished).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

CHROMIUM = os.environ.get("NBFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
STATIC = Path(__file__).resolve().parents[1] / "nbflow" / "jupyter" / "static"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]

SETUP = """\
%load_ext nbflow
import time
from nbflow import flow, task"""

FLOW = """\
@task
def fetch(i):
    time.sleep(1.2)
    return i

@task
def clean(x):
    time.sleep(1.0)
    return x + 1

@task
def validate(x):
    time.sleep(0.4)
    raise ValueError(f"row {x} has no id")

@task
def report(xs):
    time.sleep(0.6)
    return sum(xs)

@flow(name="slow-etl")
def slow_etl(n=3):
    cleaned = [clean.submit(fetch.submit(i)) for i in range(n)]
    validate.submit(cleaned[0])
    return report(cleaned)

slow_etl(return_state=True).name"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A JupyterLab server of its own: loopback port, temporary token, root dir and settings."""
    assert (STATIC / "monitor.js").exists(), "build the front-end first: cd extension && npm ci && npm run build"
    root = tmp_path_factory.mktemp("lab")
    settings = root / ".settings"
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(FLOW)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "monitor.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "NBFLOW_HOME": str(root / ".nbflow"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces"),
        "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
    }
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=", *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
    ]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (root / "server.log").read_text()[-3000:]) from None
                time.sleep(0.2)
        yield {"url": f"{base}/lab/tree/monitor.ipynb?token={token}", "root": root}
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def page(lab: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.errors = []  # type: ignore[attr-defined]
        page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            browser.close()


def _node_states(page: Any) -> list[tuple[str, str, str]]:
    """(label, state, fill) of every node of the graph on screen."""
    return page.eval_on_selector_all(
        ".nbf-node",
        "els => els.map(e => [e.querySelector('text').textContent, e.getAttribute('data-state'),"
        " e.querySelector('rect:not(.nbf-card)').getAttribute('fill')])",
    )


def test_graph_nodes_appear_and_change_colour_while_the_flow_runs(lab: dict[str, Any], page: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(lab["url"])
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=60_000)
    page.click(".jp-Notebook .jp-Cell >> nth=0")
    page.keyboard.press("Escape")
    page.click("text=Run", timeout=10_000)  # the menu
    page.click("text=Run All Cells")

    page.wait_for_selector(".nbf-node", timeout=30_000)
    seen: dict[str, list[tuple[str, str]]] = {}  # label -> the (state, fill) it went through
    running_shot = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for label, state, fill in _node_states(page):
            history = seen.setdefault(label, [])
            if not history or history[-1][0] != state:
                history.append((state, fill))
        if not running_shot and any(state == "Running" for history in seen.values() for state, _ in history[-1:]):
            page.locator(".nbf-monitor").screenshot(path=str(ARTIFACTS / "monitor-running.png"))
            running_shot = True
        if page.text_content(".nbf-header .nbf-badge") in ("Completed", "Failed"):
            break
        time.sleep(0.1)
    time.sleep(0.5)  # the final picture
    for label, state, fill in _node_states(page):
        seen.setdefault(label, []).append((state, fill))

    assert sorted(seen) == ["clean", "clean-2", "clean-3", "fetch", "fetch-2", "fetch-3", "report", "validate"]
    assert page.text_content(".nbf-header .nbf-badge") == "Completed"
    # A slow task was seen running and then completed, in two different colours.
    changed = [label for label, history in seen.items()
               if ("Running" in [s for s, _ in history]) and history[-1][0] == "Completed"]
    assert changed, seen
    running_fill = next(f for s, f in seen[changed[0]] if s == "Running")
    assert running_fill != seen[changed[0]][-1][1]
    assert seen["validate"][-1][0] == "Failed"
    assert page.text_content(".nbf-counts") is not None and "Failed 1" in page.text_content(".nbf-counts")

    # Selecting the failed task shows what went wrong.
    page.click(".nbf-node[data-state=Failed]")
    page.wait_for_selector(".nbf-detail .nbf-error", timeout=15_000)
    assert "row 1 has no id" in page.text_content(".nbf-detail")
    page.wait_for_selector(".nbf-detail .nbf-traceback", timeout=15_000)  # fetched from the kernel
    assert "in validate" in page.text_content(".nbf-detail .nbf-traceback")

    # The graph was laid out by Graphviz (sent by the kernel), and the static stand-in stays hidden.
    assert page.evaluate("() => !!(globalThis.__nbflowGraphviz && globalThis.__nbflowGraphviz.gv)")
    assert not page.is_visible("[data-nbflow-static]")
    page.locator(".nbf-monitor").screenshot(path=str(ARTIFACTS / "monitor-final.png"))
    assert running_shot
    assert not [e for e in page.errors if "nbflow" in e.lower() or "nbf" in e.lower()], page.errors  # type: ignore[attr-defined]

