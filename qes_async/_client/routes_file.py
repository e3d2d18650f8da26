"""Route files: read and write an operation-to-path table as TOML or JSON.

A route file is one flat table, ``operation = "path template"``; the file may name only the
operations it changes. TOML is read with :mod:`tomllib` (Python 3.11+) or ``tomli`` when
installed; on Python 3.10 without ``tomli`` a small reader takes the flat subset this module
writes (``name = "string"`` lines and comments) and refuses anything else, saying how to
get the full reader.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._core.errors import InvalidInputError

__all__ = ["MAX_ROUTES_FILE", "dump_routes", "file_format", "load_routes_file", "read_flat_toml"]

MAX_ROUTES_FILE = 64 * 1024  # a route table is a dozen lines; anything bigger is a mistake
FORMATS = ("toml", "json")
_TOML_LINE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|\'[^\']*\')\s*')


def file_format(path: str | os.PathLike[str]) -> str:
    """``toml`` or ``json``, from the file's suffix; refused for any other suffix."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise InvalidInputError(
            "routes file",
            f"{os.fspath(path)!r} ends neither in .toml nor in .json",
            advice="Name the file routes.toml or routes.json (`qes-async routes` prints one).",
        )
    return suffix


def load_routes_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw table of a route file (values not yet checked: :class:`Routes` does that).

    Raises:
        InvalidInputError: the file is missing, too large, not UTF-8, not valid TOML or
            JSON, or not one flat table.
    """
    kind = file_format(path)
    text = _read_text(Path(path))
    try:
        data = _parse_toml(text) if kind == "toml" else json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError both are
        raise InvalidInputError(
            "routes file", f"{os.fspath(path)!r} is not valid {kind.upper()}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInputError(
            "routes file",
            f"{os.fspath(path)!r} must hold one table of operation = path",
            advice="Start from the output of `qes-async routes`.",
        )
    return data


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_ROUTES_FILE + 1)
    except OSError as exc:
        raise InvalidInputError(
            "routes file", f"cannot read {str(path)!r}: {exc.strerror or exc}"
        ) from None
    if len(raw) > MAX_ROUTES_FILE:
        raise InvalidInputError("routes file", f"{str(path)!r} is over {MAX_ROUTES_FILE} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("routes file", f"{str(path)!r} is not UTF-8 text") from None


def _parse_toml(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    try:  # Python 3.10: tomli if installed (an optional extra), else the flat reader
        reader = importlib.import_module("tomli")
    except ImportError:
        return read_flat_toml(text)
    result: dict[str, Any] = reader.loads(text)
    return result


def read_flat_toml(text: str) -> dict[str, str]:
    """The flat TOML subset of route files, for Python 3.10 without ``tomli``.

    Accepts comments, blank lines and ``name = "basic"`` or ``name = 'literal'`` strings;
    raises ``ValueError`` (naming the line) for anything else, such as tables or numbers.
    """
    table: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        content = _strip_comment(line).strip()
        if not content:
            continue
        match = _TOML_LINE.fullmatch(content)
        if match is None:
            raise ValueError(
                f'line {number}: only `name = "path"` lines are read without tomli '
                "(pip install tomli, or use a .json file)"
            )
        key, raw = match.groups()
        if key in table:
            raise ValueError(f"line {number}: {key} is given twice")
        table[key] = json.loads(raw) if raw.startswith('"') else raw[1:-1]
    return table


def _strip_comment(line: str) -> str:
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote and (quote == "'" or line[index - 1] != "\\"):
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:index]
    return line


def dump_routes(table: Mapping[str, str], kind: str = "toml") -> str:
    """The table as route-file text (``toml`` or ``json``), readable by ``from_file``."""
    if kind == "json":
        return json.dumps(dict(table), indent=2) + "\n"
    lines = [
        "# qes-async routes: operation = path template",
        "# {id} is the signature id (= workflow id); {document_id} a signed document's id.",
    ]
    lines += [f"{name} = {json.dumps(path)}" for name, path in table.items()]
    return "\n".join(lines) + "\n"
