"""Every path of the API in one table that users can override.

The per-endpoint paths are not public (see the API contract): they are our best
reconstruction, so a user who learns the real ones changes them here, not in the code.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import attrs

__all__ = ["ENVIRONMENTS", "Routes"]

ENVIRONMENTS: dict[str, str] = {
    "sandbox": "https://api.ext-sandbox.fourthline.com",
    "production": "https://api.fourthline.com",
}


@attrs.frozen
class Routes:
    """Path templates, one per operation; ``{id}`` is the signature id.

    Override some with ``Routes().replace(confirm_signature="/v2/...")`` or pass a mapping
    as ``QESClient(routes={...})``.
    """

    create_token: str = "/v1/oauth2/token"  # noqa: S105 (a path, not a password)
    create_workflow: str = "/v1/workflows"
    upload_documents: str = "/v1/signatures/{id}/documents"
    upload_mobile_number: str = "/v1/signatures/{id}/mobile-number"
    upload_selfie: str = "/v1/signatures/{id}/selfie"
    get_signature_details: str = "/v1/signatures/{id}/details"
    approve_documents: str = "/v1/signatures/{id}/approval"
    confirm_signature: str = "/v1/signatures/{id}/confirmation"
    get_signature_status: str = "/v1/signatures/{id}/status"
    download_signed_document: str = "/v1/signatures/{id}/documents/{document_id}"
    get_infocert_contract: str = "/v1/signatures/{id}/infocert-contract"

    def replace(self, **paths: str) -> Routes:
        """A copy with some paths replaced; unknown operation names are refused."""
        return attrs.evolve(self, **paths)

    @classmethod
    def coerce(cls, value: Routes | dict[str, str] | None) -> Routes:
        """Accept a Routes, a mapping of overrides, or None (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, Routes):
            return value
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            from ._errors import InvalidInputError

            raise InvalidInputError(
                "routes",
                f"unknown operation(s) {', '.join(unknown)}",
                advice=f"Known operations: {', '.join(sorted(known))}.",
            )
        return cls(**value)

    def path(self, operation: str, **params: Any) -> str:
        """The path for an operation with its parameters filled in (URL-quoted)."""
        template: str = getattr(self, operation)
        # Not cached: the status read, the one call repeated per signature, keeps its whole
        # request (QESClient._status_requests); every other path is built once or twice.
        return template.format(**{k: quote(str(v), safe="") for k, v in params.items()})
