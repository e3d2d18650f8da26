"""The house rules of ARCHITECTURE.md, checked: each fails when a module breaks one.

Read from the source (the import statements as written), not from what a module says of
itself; each rule has a negative control that plants a breach in a scratch copy.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "qes_async"

#: The pure core: decisions and data, no I/O. Nothing here may import asyncio or aiohttp.
PURE = (
    "_core/converter.py",
    "_core/errors.py",
    "_core/lenient.py",
    "_core/models.py",
    "_core/redact.py",
    "_client/multipart.py",
    "_client/operations.py",
    "_client/protocol.py",
    "_client/retry.py",
    "_client/routes.py",
    "_client/routes_file.py",
    "_client/transport.py",
    "_client/validation.py",
    "_flow/collaborators.py",
    "_flow/evidence.py",
    "_flow/machine.py",
    "_flow/state.py",
    "_waiting/logic.py",
    "_webhooks/auth.py",
)
#: The SDK's core below the web faces (asgi, webhooks, the sandbox, the CLI, postgres):
#: only the aiohttp adapter may import aiohttp here.
AIOHTTP_FREE = ("_core", "_client", "_flow", "_waiting", "_signers", "_runtime")
AIOHTTP_ADAPTER = "_client/aiohttp_transport.py"
MAX_BODY_LINES = 60


def _imports(source: str) -> set[str]:
    """Every module an import statement names, anywhere in the source."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _io_imports(source: str) -> set[str]:
    return {m for m in _imports(source) if m.split(".")[0] in {"asyncio", "aiohttp"}}


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_imports_neither_asyncio_nor_aiohttp(module: str) -> None:
    assert _io_imports((PACKAGE / module).read_text(encoding="utf-8")) == set()


def test_the_pure_check_finds_a_planted_asyncio_import() -> None:
    source = (PACKAGE / PURE[0]).read_text(encoding="utf-8")
    assert _io_imports(source + "\n\ndef f():\n    import asyncio\n") == {"asyncio"}


def _aiohttp_loaded_by(names: list[str]) -> list[str]:
    """The aiohttp modules a fresh interpreter holds after importing ``names``."""
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return ast.literal_eval(out.stdout.strip())  # type: ignore[no-any-return]


def test_importing_the_pure_core_loads_no_aiohttp() -> None:
    """Transitively too: a fresh interpreter imports every pure module, then looks; the
    adapter, imported the same way, must be seen to load it (the probe can fail)."""
    pure = ["qes_async." + m.removesuffix(".py").replace("/", ".") for m in PURE]
    assert _aiohttp_loaded_by(pure) == []
    assert "aiohttp" in _aiohttp_loaded_by([*pure, "qes_async._client.aiohttp_transport"])


def test_only_the_adapter_imports_aiohttp_below_the_web_faces() -> None:
    offenders = []
    for folder in AIOHTTP_FREE:
        for path in sorted((PACKAGE / folder).glob("*.py")):
            rel = path.relative_to(PACKAGE).as_posix()
            if rel == AIOHTTP_ADAPTER:
                continue
            if any(m.split(".")[0] == "aiohttp" for m in _imports(path.read_text("utf-8"))):
                offenders.append(rel)
    assert offenders == []


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: Path) -> set[str]:
    """The qes_async modules a module imports when it loads: module level, outside
    ``if TYPE_CHECKING:``, relative imports resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("qes_async")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("qes_async"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def _graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(f): f for f in files}
    # An import of a package's name inside that package is its __init__ (lazy here).
    return {
        name: {t for t in _top_level_imports(path) if t in modules and t != "qes_async"}
        for name, path in modules.items()
    }


def test_no_import_cycles_at_module_level() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_planted_cycle() -> None:
    graph = _graph()
    graph["qes_async._core.models"].add("qes_async._flow.machine")  # machine imports models
    assert _cycles(graph)


def _long_functions(source: str, limit: int) -> list[tuple[str, int]]:
    long = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                body = body[1:]  # the docstring does not count
            if body and body[-1].end_lineno - body[0].lineno + 1 > limit:  # type: ignore[operator]
                long.append((node.name, node.lineno))
    return long


def test_no_function_body_is_longer_than_sixty_lines() -> None:
    found = {
        path.relative_to(PACKAGE).as_posix(): long
        for path in sorted(PACKAGE.rglob("*.py"))
        if (long := _long_functions(path.read_text(encoding="utf-8"), MAX_BODY_LINES))
    }
    assert found == {}


def test_the_length_check_finds_a_planted_long_function() -> None:
    planted = "def f():\n    '''doc'''\n" + "    x = 1\n" * (MAX_BODY_LINES + 1)
    assert _long_functions(planted, MAX_BODY_LINES) == [("f", 1)]
    assert _long_functions(planted.replace("    x = 1\n", "", 1), MAX_BODY_LINES) == []
