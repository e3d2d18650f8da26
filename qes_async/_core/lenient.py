"""Wire values read leniently where the real API may differ from our reconstruction.

Status codes may come as an integer, a numeric string (``"1036"``, seen in a bank's
integration of the same service) or null; language tags are BCP 47 and compare without
regard to case (``en``, ``EN``, ``en-GB``). The client, the webhook receiver and the sandbox
all read them through these functions, so they agree.
"""

from __future__ import annotations

import re

__all__ = ["LANGUAGE_TAG", "language_key", "read_status_code"]

# Documented codes run from 0 to 6000, but any integer is kept rather than refused: a
# refused webhook is redelivered forever. A string is read only if it is a short number.
_NUMERIC = re.compile(r"[+-]?[0-9]{1,12}")
#: A BCP 47 tag's shape: a 2-3 letter language (or a 4-8 letter registered one), then
#: subtags of 1-8 letters or digits (script, region, variant, extension).
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,7}")


def read_status_code(value: object) -> int | None:
    """A status code from the wire: an integer, a numeric string, or None.

    Raises:
        ValueError: a boolean, a fraction, a string that is not a number of at most
            12 digits, or any other type.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a status code is a number, not a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        if not _NUMERIC.fullmatch(value.strip()):
            raise ValueError("a status code string must hold digits only")
        value = int(value)
    if not isinstance(value, int):
        raise ValueError("a status code is an integer, a numeric string or null")
    return value


def language_key(tag: str) -> str:
    """The form two language tags are compared in (BCP 47 tags ignore case).

    Raises:
        ValueError: ``tag`` is not shaped like a BCP 47 tag.
    """
    if not isinstance(tag, str) or not LANGUAGE_TAG.fullmatch(tag):
        raise ValueError("a language is a BCP 47 tag such as en or en-GB")
    return tag.lower()
