"""Every path of the API in one table that users can override.

The per-endpoint paths are not public (see the API contract): they are our best
reconstruction, so a user who learns the real ones changes them here, not in the code.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import attrs

from .._core.errors import InvalidInputError
from .operations import Operation, spec

__all__ = ["ENVIRONMENTS", "ROUTES_ENV", "Routes"]

#: The environment variable naming a route file for the command line (``--routes`` wins).
ROUTES_ENV = "QES_ROUTES"

ENVIRONMENTS: dict[str, str] = {
    "sandbox": "https://api.ext-sandbox.fourthline.com",
    "production": "https://api.fourthline.com",
}


def _default(operation: Operation) -> str:
    return spec(operation).path


@attrs.frozen
class Routes:
    """Path templates, one per operation; ``{id}`` is the signature id.

    Override some with ``Routes().replace(confirm_signature="/v2/...")``, pass a mapping
    as ``QESClient(routes={...})``, or read a file with :meth:`from_file`. Every path must
    start with ``/`` and hold exactly the placeholders of its operation's default
    (``{id}``, and ``{document_id}`` for a download); anything else raises
    :class:`InvalidInputError` naming the valid ones.
    """

    # One field per operation (a test keeps them equal to the table), defaults from it.
    create_token: str = _default(Operation.CREATE_TOKEN)
    create_workflow: str = _default(Operation.CREATE_WORKFLOW)
    upload_documents: str = _default(Operation.UPLOAD_DOCUMENTS)
    upload_mobile_number: str = _default(Operation.UPLOAD_MOBILE_NUMBER)
    upload_selfie: str = _default(Operation.UPLOAD_SELFIE)
    get_signature_details: str = _default(Operation.GET_SIGNATURE_DETAILS)
    approve_documents: str = _default(Operation.APPROVE_DOCUMENTS)
    confirm_signature: str = _default(Operation.CONFIRM_SIGNATURE)
    get_signature_status: str = _default(Operation.GET_SIGNATURE_STATUS)
    download_signed_document: str = _default(Operation.DOWNLOAD_SIGNED_DOCUMENT)
    get_infocert_contract: str = _default(Operation.GET_INFOCERT_CONTRACT)

    def __attrs_post_init__(self) -> None:
        for name, template in attrs.asdict(self).items():
            _check_template(name, template)

    def replace(self, **paths: str) -> Routes:
        """A copy with some paths replaced; unknown operation names are refused."""
        return Routes.coerce({**attrs.asdict(self), **paths})

    @classmethod
    def operations(cls) -> tuple[str, ...]:
        """The operation names, in the order of the API contract."""
        return tuple(a.name for a in attrs.fields(cls))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Routes:
        """The defaults with the overrides of a route file (``.toml`` or ``.json``).

        The file is one flat table ``operation = "path"``; it may name only the operations
        that differ. ``qes-async routes`` prints a complete one to start from.

        Raises:
            InvalidInputError: the file cannot be read or parsed, names an unknown
                operation, or a path lacks or adds a placeholder.
        """
        from .routes_file import load_routes_file

        table = load_routes_file(path)
        try:
            return cls.coerce(table)
        except InvalidInputError as exc:
            message = exc.message.removeprefix(f"{exc.field}: ")
            raise InvalidInputError(
                f"routes file {os.fspath(path)!r}", message, advice=exc.advice
            ) from None

    def to_text(self, kind: str = "toml") -> str:
        """The whole table as route-file text (``toml`` or ``json``)."""
        from .routes_file import dump_routes

        return dump_routes(attrs.asdict(self), kind)

    def overrides(self) -> dict[str, str]:
        """The operations whose path differs from the default, with their paths."""
        default = attrs.asdict(Routes())
        return {k: v for k, v in attrs.asdict(self).items() if default[k] != v}

    @classmethod
    def coerce(cls, value: Routes | Mapping[str, Any] | None) -> Routes:
        """Accept a Routes, a mapping of overrides, or None (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, Routes):
            return value
        known = cls.operations()
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise InvalidInputError(
                "routes",
                f"unknown operation(s) {', '.join(map(str, unknown))}.",
                advice=f"Known operations: {', '.join(known)}.",
            )
        return cls(**value)

    def path(self, operation: str, **params: Any) -> str:
        """The path for an operation with its parameters filled in (URL-quoted)."""
        template: str = getattr(self, operation)
        # Not cached: the status read, the one call repeated per signature, keeps its whole
        # request (QESClient._status_requests); every other path is built once or twice.
        return template.format(**{k: _quoted(str(v)) for k, v in params.items()})


# What quote(value, safe="") leaves as it is: a checked id is all unreserved characters.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _quoted(value: str) -> str:
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="")


def _placeholders(template: str) -> set[str] | None:
    """The ``{name}`` fields of a template; None if it is not a plain format string."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:  # an unbalanced brace
        return None
    names = set()
    for _, name, fmt, conversion in fields:
        if name is None:
            continue
        if not name.isidentifier() or fmt or conversion:
            return None
        names.add(name)
    return names


def _check_template(operation: str, template: object) -> None:
    expected = set(spec(operation).placeholders)
    valid = " and ".join(f"{{{n}}}" for n in sorted(expected)) or "no placeholder"
    advice = f"The path of {operation} must start with / and hold {valid}."
    if not isinstance(template, str) or not template.startswith("/"):
        raise InvalidInputError(
            "routes", f"{operation}: {template!r} is not a path starting with /.", advice=advice
        )
    found = _placeholders(template)
    if found is None:
        raise InvalidInputError(
            "routes",
            f"{operation}: {template!r} has a brace that is not a {{name}}.",
            advice=advice,
        )
    missing, extra = sorted(expected - found), sorted(found - expected)
    if missing or extra:
        problems = [f"lacks {{{n}}}" for n in missing] + [f"has unknown {{{n}}}" for n in extra]
        raise InvalidInputError(
            "routes", f"{operation}: {template!r} {' and '.join(problems)}.", advice=advice
        )
