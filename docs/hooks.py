"""MkDocs hooks for the reference site: pages from README.md, the CLI's help, the API lists.

Directives in the Markdown pages (HTML comments, so the sources stay readable):

* ``<!-- readme -->``: the whole README;
* ``<!-- readme-section: TITLE -->``: the README's ``## TITLE`` section, heading included;
* ``<!-- readme-section-body: TITLE -->``: the same without its heading;
* ``<!-- cli-help -->``: ``qes-async COMMAND --help`` for every command;
* ``<!-- api: MODULE -->``: an mkdocstrings entry for every name in ``MODULE.__all__``, so
  the reference cannot miss a public name.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DIRECTIVE = re.compile(
    r"^<!-- (readme|readme-section|readme-section-body|cli-help|api)(?::\s*(.+?))? -->$", re.M
)

# qes_async's private modules, grouped under the headings of its API page.
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    (
        "The client",
        (
            "_client.client",
            "_client.documents",
            "_client.retry",
            "_client.routes",
            "_client.transport",
            "_client.pdf",
        ),
    ),
    ("Models", ("_core.models",)),
    ("The flow", ("_flow.driver", "_flow.events", "_flow.machine", "_flow.state")),
    ("Evidence", ("_flow.evidence",)),
    ("The signer", ("_signers.signer",)),
    ("Waiting", ("_waiting.waiters", "_waiting.dispatcher")),
    ("Checkpoints", ("_flow.store",)),
    ("Document sources", ("_flow.sources",)),
    ("Time", ("_runtime.clock",)),
    ("Secrets", ("_core.redact",)),
    ("Errors", ("_core.errors",)),
]


def _sections(text: str) -> dict[str, tuple[int, int]]:
    """Each ``## `` heading's title -> (first line, end line), skipping fenced code."""
    lines = text.splitlines()
    starts: list[tuple[str, int, int]] = []  # (title, level, line)
    fence = False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fence = not fence
        elif not fence and (match := re.match(r"^(#{1,6}) (.+)$", line)):
            starts.append((match.group(2).strip(), len(match.group(1)), number))
    found: dict[str, tuple[int, int]] = {}
    for index, (title, level, start) in enumerate(starts):
        end = next((s for _, lv, s in starts[index + 1 :] if lv <= level), len(lines))
        found[title] = (start, end)
    return found


def _readme_section(title: str, *, heading: bool) -> str:
    text = README.read_text(encoding="utf-8")
    found = _sections(text)
    if title not in found:
        raise ValueError(f"README.md has no section {title!r}; sections: {sorted(found)}")
    start, end = found[title]
    lines = text.splitlines()[start if heading else start + 1 : end]
    # The README's own links point at its headings: on another page they point at the guide.
    return re.sub(r"\]\(#", "](index.md#", "\n".join(lines))


def _cli_help() -> str:
    from qes_async._cli.main import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "92"
    try:
        parser = build_parser(["sandbox"])  # the sandbox's options are added when asked for
        (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        out = ["### qes-async", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, command in sub.choices.items():
            out += [f"### qes-async {name}", "", "```text", command.format_help().rstrip()]
            out += ["```", ""]
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(out)


def _entry(path: str) -> str:
    return f"::: {path}\n"


def _api(module_name: str) -> str:
    module = importlib.import_module(module_name)
    names: list[str] = [n for n in module.__all__ if n != "__version__"]
    out = [
        f"::: {module_name}",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
        "      show_root_toc_entry: false",
        "",
    ]
    if "__version__" in module.__all__:
        out += [
            f"`{module_name}.__version__` is the installed version, `{module.__version__}`.",
            "",
        ]
    if module_name == "qes_async":
        exports: dict[str, str] = module._EXPORTS
        placed: set[str] = set()
        for title, modules in GROUPS:
            group = [n for n in names if exports[n] in modules]
            out += [f"## {title}", ""] + [_entry(f"{module_name}.{n}") for n in group]
            placed.update(group)
        missed = sorted(set(names) - placed)
        if missed:
            raise ValueError(f"docs/hooks.py GROUPS leave out {missed}: add their modules")
    else:
        out += [_entry(f"{module_name}.{n}") for n in names]
    return "\n".join(out)


def _expand(match: re.Match[str]) -> str:
    kind, argument = match.group(1), (match.group(2) or "").strip()
    if kind == "readme":
        return README.read_text(encoding="utf-8")
    if kind in ("readme-section", "readme-section-body"):
        return _readme_section(argument, heading=kind == "readme-section")
    if kind == "cli-help":
        return _cli_help()
    return _api(argument)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return DIRECTIVE.sub(_expand, markdown)


ROLE = re.compile(r":(?:class|meth|func|attr|exc|mod|data|obj):<code>(~?)([\w.]+)</code>")


def _public_paths() -> dict[str, str]:
    """A public name (bare or dotted from its module) -> its full path, for cross-references."""
    paths: dict[str, str] = {}
    for module_name in ("qes_async.postgres", "qes_async.sandbox", "qes_async"):
        for name in importlib.import_module(module_name).__all__:
            paths[name] = f"{module_name}.{name}"
    return paths


def _link(match: re.Match[str]) -> str:
    """Docstrings speak reST roles (``:class:`X```); on the site they become links."""
    short, target = match.group(1) == "~", match.group(2)
    head, _, rest = target.partition(".")
    paths = _public_paths()
    if target.startswith("qes_async."):
        identifier = target
    elif head in paths:
        identifier = paths[head] + (f".{rest}" if rest else "")
    else:
        return f"<code>{target}</code>"
    title = target.rsplit(".", 1)[-1] if short else target
    return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'


def on_page_content(html: str, **kwargs: Any) -> str:
    return ROLE.sub(_link, html)
