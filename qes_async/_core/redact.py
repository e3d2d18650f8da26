"""Keep secrets and personal data out of logs, reprs and error messages.

Client secret, access token, passcode, full mobile number and document bytes must never be
printed.  Everything that formats text from service answers or user input goes through here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, final

__all__ = ["Scrubber", "Secret", "excerpt", "hold", "mask_phone", "reveal", "scrub"]

_PHONE = re.compile(r"\+?\d[\d ()-]{6,}\d")
_SECRET_FIELDS = re.compile(
    # The value ends at an unescaped quote, or wherever the excerpt was cut short.
    r'("(?:access_token|client_secret|passcode|password|mobileNumber|token)"\s*:\s*)'
    r'"(?:[^"\\]|\\.)*(?:"|$)',
    re.IGNORECASE,
)
_BEARER = re.compile(r"(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# The same fields form-encoded (``access_token=...&token_type=...``) or as ``key=value``.
_FORM_FIELDS = re.compile(
    r"\b(access_token|refresh_token|id_token|client_secret|passcode|password|token)=[^&\s\"']*",
    re.IGNORECASE,
)
_SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "passcode",
        "password",
        "token",
        "mobilenumber",
        "authorization",
    }
)
EXCERPT_LIMIT = 200


def mask_phone(number: str | None) -> str:
    """Mask a phone number, keeping its first three and last three characters.

    >>> mask_phone("+31612345678")
    '+31******678'
    """
    if not number:
        return ""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 6) + number[-3:]


def scrub(text: str) -> str:
    """Remove tokens, secrets, passcodes and phone numbers from free text."""
    text = _SECRET_FIELDS.sub(r'\1"***"', text)
    text = _FORM_FIELDS.sub(r"\1=***", text)
    text = _BEARER.sub(r"\1 ***", text)
    return _PHONE.sub(lambda m: mask_phone(re.sub(r"[^\d+]", "", m.group(0))), text)


def excerpt(body: bytes | str | None, limit: int = EXCERPT_LIMIT) -> str:
    """A short, scrubbed, printable excerpt of a response body for error messages."""
    if body is None:
        return ""
    if isinstance(body, bytes):
        if body[:5] == b"%PDF-":
            return f"<PDF, {len(body)} bytes>"
        text = body[: limit * 4].decode("utf-8", errors="replace")
    else:
        text = body[: limit * 4]
    text = scrub(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@final
class Secret:
    """A secret string that does not show itself: its ``repr`` and ``str`` are ``***``.

    The SDK keeps the client secret, tokens, passcodes and mobile numbers in these while
    they wait in its frames, so an error tracker that records local variables (or a
    traceback printer that shows them) finds ``Secret('***')`` instead of the value.
    :meth:`reveal` gives the value to the one place that must send it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself, for the request that carries it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled; keep the value where it belongs")


def hold(value: str | Secret) -> Secret:
    """``value`` as a :class:`Secret` (a Secret is kept as it is)."""
    return value if isinstance(value, Secret) else Secret(value)


def reveal(value: str | Secret) -> str:
    """The text of a plain string or of a :class:`Secret`."""
    return value.reveal() if isinstance(value, Secret) else value


# Values shorter than this would cut ordinary words and numbers out of messages.
_MIN_LITERAL = 4
_LITERALS_KEPT = 32


class Scrubber:
    """Cuts the literal secrets one client has sent out of what the service answers.

    Pattern scrubbing (:func:`scrub`) finds secrets by their field names; a server that
    echoes one in free text (``"invalid client_secret s3cr3t"``, an ``error_description``
    holding the token) is caught only by the value itself. The client registers its secret,
    every token it receives and every passcode it sends (the newest 32 values are kept);
    error excerpts, ``.errors`` and ``.raw`` pass through :meth:`text` and :meth:`value`.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[str | Secret] = ()) -> None:
        self._values: dict[str, None] = {}
        for value in values:
            self.add(value)

    def add(self, value: str | Secret) -> None:
        """Remember a value to cut (short ones are ignored: they would cut words)."""
        text = reveal(value)
        if len(text) < _MIN_LITERAL or text in self._values:
            return
        if len(self._values) >= _LITERALS_KEPT:
            # The client secret, added first, stays; the oldest other value goes.
            keys = iter(self._values)
            next(keys)
            oldest = next(keys, None)
            if oldest is not None:
                del self._values[oldest]
        self._values[text] = None

    def _cut(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):  # longest first
            if value in text:
                text = text.replace(value, "***")
        return text

    def text(self, text: str) -> str:
        """``text`` without any remembered value, then pattern-scrubbed."""
        return scrub(self._cut(text))

    def holds(self, text: str) -> bool:
        """Whether ``text`` contains a remembered value (cheaper than :meth:`text`)."""
        return any(map(text.__contains__, self._values))  # no Python frame per value

    def body(self, body: bytes) -> bytes:
        """A body without any remembered value (as UTF-8 text)."""
        if not self._values or not body:
            return body
        text = body.decode("utf-8", errors="replace")
        cut = self._cut(text)
        return body if cut == text else cut.encode("utf-8")

    def value(self, data: Any, depth: int = 0) -> Any:
        """A copy of parsed JSON with secret fields masked and remembered values cut."""
        if isinstance(data, str):
            return self.text(data)
        if depth > 32:
            return "***"
        if isinstance(data, dict):
            return {
                key: "***"
                if isinstance(key, str) and key.lower() in _SECRET_KEYS and val
                else self.value(val, depth + 1)
                for key, val in data.items()
            }
        if isinstance(data, list):
            return [self.value(item, depth + 1) for item in data]
        return data

    def __repr__(self) -> str:
        return f"Scrubber({len(self._values)} values)"
