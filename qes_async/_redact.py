"""Keep secrets and personal data out of logs, reprs and error messages.

Client secret, access token, passcode, full mobile number and document bytes must never be
printed.  Everything that formats text from service answers or user input goes through here.
"""

from __future__ import annotations

import re

__all__ = ["excerpt", "mask_phone", "scrub"]

_PHONE = re.compile(r"\+?\d[\d ()-]{6,}\d")
_SECRET_FIELDS = re.compile(
    # The value ends at an unescaped quote, or wherever the excerpt was cut short.
    r'("(?:access_token|client_secret|passcode|password|mobileNumber|token)"\s*:\s*)'
    r'"(?:[^"\\]|\\.)*(?:"|$)',
    re.IGNORECASE,
)
_BEARER = re.compile(r"(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
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
