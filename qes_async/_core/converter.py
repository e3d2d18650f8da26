"""The package's own cattrs converter: camelCase on the wire, snake_case in Python.

Never ``cattrs.global_converter``: users may configure theirs however they like.
Unknown fields are ignored; unknown status strings are kept (see :class:`Status`).
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .lenient import read_status_code
from .models import Status

__all__ = ["converter", "structure", "to_camel", "unstructure"]

T = TypeVar("T")


def to_camel(name: str) -> str:
    """``signature_id`` -> ``signatureId``."""
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _text(value: Any, _: Any = None) -> str:
    # cattrs would turn any value into a str (a list id into "['a']"); ids and statuses
    # may come as numbers, but an object, an array or a boolean is a wrong shape.
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _status_code(value: Any, _: Any = None) -> int | None:
    return read_status_code(value)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _text)
    conv.register_structure_hook(Status, lambda value, _: Status(_text(value)))
    conv.register_unstructure_hook(Status, lambda status: status.value)
    # A legal condition's version may be a number or a label: keep whichever came.
    conv.register_structure_hook(
        int | str | None,
        lambda value, _: value if value is None or isinstance(value, (int, str)) else str(value),
    )

    def _overrides(cls: type[Any], *, structuring: bool) -> dict[str, Any]:
        # request_id comes from a header: the protocol layer puts it in the data it
        # structures (always overriding the body), and it never goes on the wire.
        # statusCode may be an integer, a numeric string or null (see _lenient).
        return {
            a.name: override(omit=True)
            if a.name == "request_id" and not structuring
            else override(
                rename=to_camel(a.name),
                struct_hook=_status_code if a.name == "status_code" and structuring else None,
            )
            for a in attrs.fields(cls)
        }

    def structure_factory(cls: type[Any]) -> Any:
        return make_dict_structure_fn(cls, conv, **_overrides(cls, structuring=True))

    def unstructure_factory(cls: type[Any]) -> Any:
        return make_dict_unstructure_fn(cls, conv, **_overrides(cls, structuring=False))

    conv.register_structure_hook_factory(attrs.has, structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, unstructure_factory)
    return conv


converter = _make_converter()


def structure(data: Any, cls: type[T]) -> T:
    """Wire JSON (already decoded) to a model; raises cattrs errors on a wrong shape."""
    return converter.structure(data, cls)


def unstructure(obj: Any) -> Any:
    """A model to wire JSON (camelCase keys)."""
    return converter.unstructure(obj)
