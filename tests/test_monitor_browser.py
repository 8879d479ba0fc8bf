"""The live monitor in a real JupyterLab, seen by a real headless Chromium (Debian's, via Playwright).

JupyterLab runs on 127.0.0.1 with a throw-away token, root dir, settings and NBFLOW_HOME, and saves
widget state in notebooks. One test opens a notebook, runs a flow with a few slow tasks and one that
fails, and watches the graph while the run goes on; another saves a notebook, ends its kernel and
opens it again; a third saves a notebook whose run ended after its last cell. Screenshots land in
test-artifacts/ (mid-run, finished, reopened).
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

QUICK = """\
@task
def double(x):
    return 2 * x

@flow(name="quick")
def quick():
    return double(double(1))

quick()"""

BACKGROUND = """\
import os, threading
started = threading.Event()

@task
def nap():
    started.set()
    while not os.path.exists("bg.gate"):  # the test opens it once no cell runs any more
        time.sleep(0.05)
    return 1

@flow(name="bg", flow_run_name="napping-in-the-background")
def bg():
    return nap()

threading.Thread(target=bg).start()
started.wait(30)
nbflow.monitor("napping-in-the-background");"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A JupyterLab server of its own: loopback port, temporary token, root dir and settings."""
    built = all((STATIC / name).exists() for name in ("loader.js", "monitor.js", "monitor.css"))
    assert built, "build the front-end first: cd extension && npm ci && npm run build"
    root = tmp_path_factory.mktemp("lab")
    settings = root / ".settings"
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    widgets = settings / "@jupyter-widgets" / "jupyterlab-manager" / "plugin.jupyterlab-settings"
    widgets.parent.mkdir(parents=True)
    widgets.write_text(json.dumps({"saveState": True}))  # as nbclient and nbconvert --execute always do
    notebooks = {"monitor.ipynb": [SETUP, FLOW], "reopen.ipynb": [SETUP, QUICK],
                 "background.ipynb": [SETUP + "\nimport nbflow", BACKGROUND]}
    for name, cells in notebooks.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / name)
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
        yield {"url": f"{base}/lab/tree/monitor.ipynb?token={token}", "root": root, "base": base, "token": token}
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


def _run_all(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=60_000)
    page.click(".jp-Notebook .jp-Cell >> nth=0")
    page.keyboard.press("Escape")
    page.click("text=Run", timeout=10_000)  # the menu
    page.click("text=Run All Cells")


def _api(lab: dict[str, Any], path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"{lab['base']}/api/{path}", method=method,
                                     headers={"Authorization": f"token {lab['token']}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


def test_graph_nodes_appear_and_change_colour_while_the_flow_runs(lab: dict[str, Any], page: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    _run_all(page, lab["url"])

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



def test_a_reopened_notebook_shows_its_monitors_from_the_saved_widget_state(lab: dict[str, Any], page: Any) -> None:
    """Each monitor saves only a small loader; the front-end is saved once for all of them."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = lab["root"] / "reopen.ipynb"
    _run_all(page, f"{lab['base']}/lab/tree/reopen.ipynb?reset&token={lab['token']}")
    page.wait_for_selector(".nbf-header .nbf-badge >> text=Completed", timeout=30_000)
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while "application/vnd.jupyter.widget-state+json" not in path.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    saved = json.loads(path.read_text())["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    monitors = [m["state"] for m in saved.values() if m["model_name"] == "AnyModel"]
    assets = [m["state"] for m in saved.values() if "esm" in m["state"]]
    assert len(monitors) == 1 and len(monitors[0]["_esm"]) < 2_000 and len(assets) == 1
    page.goto("about:blank")
    for session in _api(lab, "sessions"):  # end the kernel: nothing of the run is alive any more
        if session["path"].endswith("reopen.ipynb"):
            _api(lab, f"sessions/{session['id']}", method="DELETE")

    page.goto(f"{lab['base']}/lab/tree/reopen.ipynb?reset&token={lab['token']}")
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=60_000)  # a new kernel, no cell run
    page.wait_for_selector(".nbf-node", timeout=30_000)
    assert page.text_content(".nbf-header .nbf-badge") == "Completed"
    assert sorted(label for label, _state, _fill in _node_states(page)) == ["double", "double-2"]
    assert {state for _label, state, _fill in _node_states(page)} == {"Completed"}
    assert not page.is_visible("[data-nbflow-static]")  # the live view stands in for the summary
    page.locator(".nbf-monitor").screenshot(path=str(ARTIFACTS / "monitor-reopened.png"))
    assert not [e for e in page.errors if "nbflow" in e.lower() or "nbf" in e.lower()], page.errors  # type: ignore[attr-defined]


def test_a_run_that_ends_after_its_cell_updates_the_saved_summary(lab: dict[str, Any], page: Any) -> None:
    """JupyterLab applies a display update by its id, also once the cell that showed it has ended."""
    path = lab["root"] / "background.ipynb"
    _run_all(page, f"{lab['base']}/lab/tree/background.ipynb?reset&token={lab['token']}")
    page.wait_for_selector(".nbf-header .nbf-badge >> text=Running", timeout=30_000)
    page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=30_000)  # no cell runs any more
    assert "Running" in (page.text_content("[data-nbflow-static]") or "")
    (lab["root"] / "bg.gate").touch()
    page.wait_for_selector(".nbf-header .nbf-badge >> text=Completed", timeout=30_000)
    deadline = time.monotonic() + 15  # the summary is hidden next to the live view, but it is there
    while "Completed 1" not in (page.text_content("[data-nbflow-static]") or "") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Completed 1" in (page.text_content("[data-nbflow-static]") or "")
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while "(bg): Completed" not in path.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    outputs = json.loads(path.read_text())["cells"][1]["outputs"]
    summaries = [o["data"]["text/plain"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(summaries) == 1 and "(bg): Completed" in "".join(summaries[0]), summaries
