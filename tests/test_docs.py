"""The docs cannot drift: the site builds, every example runs, every command they name exists, and the
package a new user installs is the one the docs describe."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST_NAME = "nbflow-lab"
TEST_COMMAND = (
    "apt-get update -q && apt-get install -y -q python3-venv chromium && python3 -m venv .venv && "
    ".venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
)
MAX_SKIPPED_BLOCKS = 8  # `<!-- not-run: reason -->` blocks, in all pages together
EXAMPLE_TIMEOUT = 180  # seconds for one page's examples


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the block's first code line in its page
    lang: str
    source: str
    not_run: str | None  # the reason given in a `<!-- not-run: reason -->` comment before the block

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.*?)\s*-->")
FENCE = re.compile(r"^(\s*)(`{3,})([\w+-]*)\s*$")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, in order (indented fences, e.g. in list items, included)."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    previous = ""  # the last non-blank line before the current one
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            if lines[i].strip():
                previous = lines[i]
            i += 1
            continue
        indent, ticks, lang = opening.groups()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != ticks:
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        reason = NOT_RUN.search(previous)
        found.append(Block(page, i + 2, lang, "\n".join(body) + "\n", reason.group(1) if reason else None))
        previous = ""
        i = j + 1
    return found


def runnable(page: Path) -> list[Block]:
    """The blocks a reader would run, in order: ```python, and ```ipython cells (run in a kernel)."""
    return [b for b in blocks(page) if b.lang in ("python", "ipython") and b.not_run is None]


def in_kernel(page: Path) -> bool:
    """A page with notebook cells (magics) runs all its blocks as cells of one real kernel."""
    return any(b.lang == "ipython" for b in runnable(page))


# Runs one page's blocks in order, in one namespace, as the reader would paste them into one script.
# Each block is compiled under its page's name with its real line numbers, so a traceback points
# into the Markdown file.
DRIVER = r"""
import json, sys, traceback
namespace = {"__name__": "__main__"}
for where, path, line, source in json.load(sys.stdin):
    try:
        exec(compile("\n" * (line - 1) + source, path, "exec"), namespace)
    except BaseException:
        print(f"example at {where} failed:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


def _ids(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.slow  # a fresh process per page
@pytest.mark.parametrize("page", [p for p in pages() if runnable(p) and not in_kernel(p)], ids=_ids)
def test_python_examples_run(page: Path, tmp_path: Path) -> None:
    """Every ```python block runs, the page's blocks in order, in a fresh process with its own home."""
    payload = [[b.where, str(b.page.relative_to(ROOT)), b.line, b.source] for b in runnable(page)]
    env = {**os.environ, "NBFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": _pythonpath()}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER], input=json.dumps(payload), text=True, capture_output=True,
        cwd=tmp_path, env=env, timeout=EXAMPLE_TIMEOUT,
    )
    if proc.returncode != 0:
        pytest.fail(proc.stderr[-4000:], pytrace=False)  # names the page and the block's line


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in pages() if in_kernel(p)], ids=_ids)
def test_notebook_examples_run(page: Path, tmp_path: Path) -> None:
    """A page with magics: every block is a cell of one notebook, run in order in a real kernel."""
    from _kernel import NotebookKernel, error, stream

    home = tmp_path / "home"
    home.mkdir()
    with NotebookKernel(home, env={"PYTHONPATH": _pythonpath()}, timeout=EXAMPLE_TIMEOUT) as kernel:
        for block in runnable(page):
            cell = kernel.run(block.source)
            failure = error(cell)
            # A magic's bad arguments are no error output: IPython prints one `UsageError:` line.
            usage = [line for line in stream(cell).splitlines() if line.startswith("UsageError:")]
            if failure is not None or usage:
                why = failure["traceback"][-4000:] if failure else usage[0]
                pytest.fail(f"example at {block.where} failed:\n{why}", pytrace=False)


def test_every_code_block_says_what_it_is() -> None:
    """A block without a known language could hide an example that never runs."""
    known = {"python", "ipython", "bash", "text", "toml", "yaml"}
    bad = [f"{b.where} (```{b.lang})" for p in pages() for b in blocks(p) if b.lang not in known]
    assert not bad, f"fence these blocks with one of {sorted(known)}: {bad}"


def test_blocks_that_do_not_run_are_few_and_say_why() -> None:
    skipped = [b for p in pages() for b in blocks(p) if b.lang in ("python", "ipython") and b.not_run is not None]
    unexplained = [b.where for b in skipped if b.not_run == ""]
    assert not unexplained, f"give a reason in <!-- not-run: reason -->: {unexplained}"
    assert len(skipped) <= MAX_SKIPPED_BLOCKS, [b.where for b in skipped]


# `nbflow X` in shell blocks and inline code (not `from nbflow import`): a command and maybe a subcommand.
COMMAND = re.compile(r"(?:^|[\s`/$(&|;])(?<!from )(?<!import )nbflow((?:[ \t]+[a-z][\w-]*){1,2})")
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def named_commands() -> dict[tuple[str, ...], str]:
    """Every ``nbflow X [Y]`` the docs show, with the first place it is shown."""
    from nbflow.cli import build_parser

    groups = _subcommands(build_parser())
    named: dict[tuple[str, ...], str] = {}
    for page in pages():
        texts = []
        for b in blocks(page):
            for offset, line in enumerate(b.source.splitlines()):
                if b.lang == "bash":  # a command line, its comment left out
                    texts.append((f"{b.page.relative_to(ROOT)}:{b.line + offset}", re.sub(r"(^|\s)#.*", "", line)))
                elif b.lang == "text" and line.startswith("$ "):  # a shown terminal session
                    texts.append((f"{b.page.relative_to(ROOT)}:{b.line + offset}", line))
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            texts += [(f"{page.relative_to(ROOT)}:{number}", code) for code in INLINE_CODE.findall(line)]
        for where, text in texts:
            for match in COMMAND.finditer(text):
                words = tuple(match.group(1).split())
                # A second word is part of the command only where the first is a group of commands.
                path = words if words[0] in groups and groups[words[0]] else words[:1]
                named.setdefault(path, where)
    return named


def _subcommands(parser) -> dict[str, set[str]]:
    import argparse

    result: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                result[name] = {n for a in sub._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices}
    return result


@pytest.mark.slow  # runs `nbflow ... --help` for every command the docs name
def test_commands_named_in_the_docs_exist() -> None:
    named = named_commands()
    assert ("demo",) in named and ("flow-run", "ls") in named  # the scan finds commands at all
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    missing = []
    for path, where in sorted(named.items()):
        proc = subprocess.run([sys.executable, "-m", "nbflow", *path, "--help"], capture_output=True, text=True,
                              env=env, timeout=60)
        if proc.returncode != 0:
            missing.append(f"`nbflow {' '.join(path)}` ({where}): {proc.stderr.strip().splitlines()[-1:]}")
    assert not missing, missing


def test_help_promises_only_what_exists() -> None:
    proc = subprocess.run([sys.executable, "-m", "nbflow", "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": _pythonpath()}, timeout=60)
    assert proc.returncode == 0
    assert "schedul" not in proc.stdout.lower(), proc.stdout
    assert "schedul" not in _pyproject()["project"]["description"].lower()


def test_readme_is_a_front_page() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode()) < 10_000, len(text.encode())
    assert TEST_COMMAND in text  # .ci/run runs exactly this line
    commands = [line for b in blocks(ROOT / "README.md") if b.lang == "bash" for line in b.source.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    main = [c for c in commands if c.rstrip().endswith("nbflow demo")]
    assert len(main) == 1 and "apt-get" not in main[0] and "sudo" not in main[0], main
    # Schedules and deployments do not exist yet: a line may say they are coming, no more.
    promises = [line for line in text.splitlines() if re.search(r"schedul|deploy|worker", line, re.I)]
    assert all("coming" in line.lower() for line in promises), promises
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


def test_install_lines_name_the_distribution() -> None:
    """`pip install nbflow` installs someone else's 2019 project: every install line names ours."""
    wrong = []
    for page in pages():
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for match in re.finditer(r"pip install ([^`\n]*)", line):
                what = re.split(r"\s#", match.group(1))[0]  # the requirement, its comment left out
                if re.search(r"(?<![\w/.-])nbflow(?![\w-])", what):
                    wrong.append(f"{page.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert not wrong, wrong
    project = _pyproject()["project"]
    assert project["name"] == DIST_NAME
    extras = project["optional-dependencies"]
    self_refs = [r for reqs in extras.values() for r in reqs if re.match(r"nbflow[\[-]", r)]
    assert self_refs and all(r.startswith(DIST_NAME + "[") for r in self_refs), self_refs
    assert "docs" in extras and f"{DIST_NAME}[jupyter,dask,docs]" in extras["test"]


def test_one_supported_python() -> None:
    project = _pyproject()["project"]
    assert project["requires-python"] == ">=3.11"
    versions = [c.rsplit(":: ", 1)[1] for c in project["classifiers"] if c.startswith("Programming Language :: Python :: 3.")]
    assert versions and min(versions, key=lambda v: tuple(map(int, v.split(".")))) == "3.11", versions
    stated = {page.relative_to(ROOT): re.findall(r"Python (3\.\d+)\+", page.read_text(encoding="utf-8")) for page in pages()}
    assert stated[Path("README.md")] and stated[Path("docs/index.md")], "README and docs/index.md say which Python"
    assert {v for vs in stated.values() for v in vs} == {"3.11"}, stated
    older = [str(p.relative_to(ROOT)) for p in pages() if re.search(r"(?<![\d.])3\.10(?!\d)", p.read_text(encoding="utf-8"))]
    assert not older, f"these pages still mention Python 3.10: {older}"


def test_license_is_apache_2() -> None:
    assert _pyproject()["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


@pytest.mark.slow
def test_site_builds_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict`: no broken link, no missing page, every API reference resolves."""
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": _pythonpath()}, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # The generated pages hold what the code defines: every setting, every command, the API.
    from nbflow._core.settings import ENV_PREFIX, SETTINGS_SPEC

    settings = (site / "reference" / "settings" / "index.html").read_text(encoding="utf-8")
    assert all(f"{ENV_PREFIX}{name.upper()}" in settings for name in SETTINGS_SPEC)
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for group, commands in _subcommands(__import__("nbflow.cli", fromlist=["x"]).build_parser()).items():
        assert f"nbflow {group}" in cli and all(f"nbflow {group} {c}" in cli for c in commands), group
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "task_input_hash" in api and "DaskTaskRunner" in api and "flow_runs" in api


def _build_wheel(source: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, env=env, timeout=600,
    )


@pytest.mark.slow
def test_wheel_is_honest(tmp_path: Path) -> None:
    """The wheel a new user gets: our distribution name, the license, one Python statement, no stray files."""
    proc = _build_wheel(ROOT, tmp_path, {**os.environ, "NBFLOW_SKIP_JS_BUILD": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.startswith("nbflow_lab-")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = zf.read(metadata).decode()
    assert not [n for n in names if Path(n).name.startswith(".")], [n for n in names if Path(n).name.startswith(".")]
    assert any(n.endswith("LICENSE") for n in names)
    assert "nbflow/jupyter/static/monitor.js" in names  # the monitor's bundle still ships
    assert f"Name: {DIST_NAME}\n" in meta and "Requires-Python: >=3.11\n" in meta
    assert "Programming Language :: Python :: 3.10" not in meta


@pytest.mark.slow
def test_a_failing_js_build_names_the_way_out(tmp_path: Path) -> None:
    """npm failing (here: offline with an empty npm cache) says how to build without the monitor."""
    source = tmp_path / "src"
    static = ROOT / "nbflow" / "jupyter" / "static"

    def leave_out(folder: str, names: list[str]) -> set[str]:
        if Path(folder) == static:  # no bundle: the build must run npm
            return {n for n in names if n.endswith((".js", ".css"))}
        return {n for n in names if n in (".git", ".venv", "node_modules", "__pycache__", "site", "test-artifacts")}

    shutil.copytree(ROOT, source, ignore=leave_out)
    env = {**os.environ, "npm_config_offline": "true", "npm_config_cache": str(tmp_path / "npm-cache")}
    env.pop("NBFLOW_SKIP_JS_BUILD", None)
    proc = _build_wheel(source, tmp_path / "out", env)
    assert proc.returncode != 0
    assert "NBFLOW_SKIP_JS_BUILD=1" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-4000:]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _pythonpath() -> str:
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
