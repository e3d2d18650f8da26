"""How the webhook receiver checks Fourthline's credentials: pure, synchronous, no I/O.

* :class:`BasicAuth`: a username and password given to Fourthline, sent on every webhook.
* :class:`BearerAuth`: Fourthline first calls the receiver's own token endpoint (the
  "AuthUrl") with those credentials in HTTP Basic and ``grant_type=client_credentials``,
  then sends ``Authorization: Bearer <token>``. Tokens are random, opaque and expire.

Every comparison of a secret is constant-time (:func:`hmac.compare_digest`); no secret
appears in a repr, a log record or a response.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from urllib.parse import parse_qs

from .._core.errors import InvalidInputError
from .._runtime.clock import Clock, SystemClock

__all__ = ["AuthResult", "BasicAuth", "BearerAuth", "TokenAnswer", "parse_basic"]

REALM = "fourthline-webhooks"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def parse_basic(authorization: str | None) -> tuple[str, str] | None:
    """``Basic base64(user:password)`` to ``(user, password)``; None when absent or bad."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 once decoded
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _check_pair(given: tuple[str, str] | None, user: str, password: str) -> bool:
    if given is None:
        return False
    # Both halves are always compared, so timing does not tell which one was wrong.
    return _same(given[0], user) & _same(given[1], password)


def _expected_basic(user: str, password: str) -> bytes | None:
    """The ``Authorization`` value a client sends for ``user`` and ``password`` in the usual
    form (``Basic`` and the padded base64 of ``user:password``), as bytes; None when that
    value does not read back as the same pair (a ``:`` in ``user``), so only the full parse
    decides."""
    try:
        value = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    except UnicodeEncodeError:  # a lone surrogate: the full check refuses every header
        return None
    return value.encode("ascii") if parse_basic(value) == (user, password) else None


def _basic_ok(authorization: str | None, expected: bytes | None, user: str, password: str) -> bool:
    """Whether ``authorization`` carries ``user`` and ``password`` in HTTP Basic.

    The usual form, byte for byte ``expected``, takes one constant-time comparison; any
    other form (another case or spacing, or wrong credentials) is parsed and both halves
    compared in constant time, as before, so a refusal reads the same."""
    if (
        authorization is not None
        and expected is not None
        and hmac.compare_digest(authorization.encode("utf-8", "surrogatepass"), expected)
    ):
        return True
    return _check_pair(parse_basic(authorization), user, password)


def _require(field: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(field, "must be a non-empty string")


class AuthResult:
    """The outcome of a credentials check: ``ok``, or the ``WWW-Authenticate`` challenge."""

    __slots__ = ("challenge", "ok")

    def __init__(self, ok: bool, challenge: str = "") -> None:
        self.ok = ok
        self.challenge = challenge

    def __bool__(self) -> bool:
        return self.ok


_OK = AuthResult(True)  # what every accepted check answers (the receiver reads, never writes)


class _BasicCredentials:
    """A user name and password checked in HTTP Basic; the expected header is kept in
    step with the user name."""

    def __init__(self, username: str, password: str) -> None:
        _require("username", username)
        _require("password", password)
        self._password = password
        self.username = username

    @property
    def username(self) -> str:
        """The user name (assignable; the expected header follows it)."""
        return self._username

    @username.setter
    def username(self, value: str) -> None:
        self._username = value
        self._expected = _expected_basic(value, self._password)

    def _basic_matches(self, headers: Mapping[str, str]) -> bool:
        """:func:`_basic_ok` on the ``Authorization`` header (its usual form in line: the
        one check of every accepted webhook)."""
        authorization = headers.get("authorization")
        expected = self._expected
        if (
            authorization is not None
            and expected is not None
            and hmac.compare_digest(authorization.encode("utf-8", "surrogatepass"), expected)
        ):
            return True
        return _basic_ok(authorization, None, self._username, self._password)


class BasicAuth(_BasicCredentials):
    """Webhooks carry ``Authorization: Basic`` with this username and password.

    Args:
        username: the user name you gave Fourthline for webhooks.
        password: the password you gave Fourthline for webhooks.
    """

    def check(self, headers: Mapping[str, str]) -> AuthResult:
        """Check a webhook's (lower-cased) headers."""
        if self._basic_matches(headers):
            return _OK
        return AuthResult(False, f'Basic realm="{REALM}", charset="UTF-8"')

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password='***')"


class TokenAnswer:
    """What the token endpoint answers: an HTTP status, JSON body and extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: dict[str, object], headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def __repr__(self) -> str:
        return f"TokenAnswer(status={self.status})"  # the body may hold a token


class BearerAuth(_BasicCredentials):
    """Webhooks carry ``Authorization: Bearer`` with a token from our own token endpoint.

    Args:
        username: the user name you gave Fourthline; it sends it in HTTP Basic to the
            token endpoint (the AuthUrl you configured).
        password: the password that goes with it.
        token_lifetime: seconds a token stays valid (``expires_in``).
        max_tokens: at most this many live tokens are kept; the oldest go first.
        clock: the clock that ages tokens (the receiver passes its own).
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        token_lifetime: float = 3600.0,
        max_tokens: int = 1000,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(username, password)
        if not token_lifetime > 0:
            raise InvalidInputError("token_lifetime", "must be > 0 seconds")
        if max_tokens < 1:
            raise InvalidInputError("max_tokens", "must be >= 1")
        self.token_lifetime = token_lifetime
        self.max_tokens = max_tokens
        self.clock: Clock = clock if clock is not None else SystemClock()
        # SHA-256 of each token -> its expiry; the tokens themselves are never stored.
        self._tokens: OrderedDict[bytes, float] = OrderedDict()

    def issue(self, headers: Mapping[str, str], body: bytes) -> TokenAnswer:
        """Answer a call to the token endpoint (HTTP Basic + client-credentials grant)."""
        refused = self.check_client(headers)
        return refused if refused is not None else self.grant(headers, body)

    def check_client(self, headers: Mapping[str, str]) -> TokenAnswer | None:
        """The 401 for a token request without the right HTTP Basic credentials, else None.

        The credentials come only in the ``Authorization`` header (never in the body), so
        they are checked before any body byte is read.
        """
        if self._basic_matches(headers):
            return None
        challenge = {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}
        return TokenAnswer(401, {"error": "invalid_client"}, {**_NO_STORE, **challenge})

    def grant(self, headers: Mapping[str, str], body: bytes) -> TokenAnswer:
        """Issue a token for a client-credentials grant; call only once
        :meth:`check_client` passed (as :meth:`issue` does)."""
        no_store = dict(_NO_STORE)
        grant = _grant_type(headers.get("content-type", ""), body)
        if grant is None:
            return TokenAnswer(400, {"error": "invalid_request"}, no_store)
        if grant != "client_credentials":
            return TokenAnswer(400, {"error": "unsupported_grant_type"}, no_store)
        token = secrets.token_urlsafe(32)
        self._remember(token)
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.token_lifetime),
        }
        return TokenAnswer(200, dict(answer), no_store)

    def _remember(self, token: str) -> None:
        now = self.clock.time()
        self._tokens[_digest(token)] = now + self.token_lifetime
        while self._tokens:
            key, expires = next(iter(self._tokens.items()))
            if len(self._tokens) <= self.max_tokens and expires > now:
                break
            del self._tokens[key]

    def check(self, headers: Mapping[str, str]) -> AuthResult:
        """Check a webhook's (lower-cased) headers for a live token we issued."""
        scheme, _, token = (headers.get("authorization") or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return AuthResult(False, f'Bearer realm="{REALM}"')
        expires = self._lookup(token)
        if expires is None or expires <= self.clock.time():
            return AuthResult(False, f'Bearer realm="{REALM}", error="invalid_token"')
        return _OK

    def _lookup(self, token: str) -> float | None:
        # The table is keyed by the token's SHA-256: a lookup compares digests, never the
        # token, so its timing tells an attacker nothing usable about a valid token (the
        # digest of a guess does not share a prefix with it in any controllable way).
        return self._tokens.get(_digest(token))

    @property
    def live_tokens(self) -> int:
        """How many issued tokens have not expired yet."""
        now = self.clock.time()
        return sum(1 for expires in self._tokens.values() if expires > now)

    def __repr__(self) -> str:
        return (
            f"BearerAuth(username={self.username!r}, password='***', "
            f"token_lifetime={self.token_lifetime})"
        )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _grant_type(content_type: str, body: bytes) -> str | None:
    """The ``grant_type`` of a form (or, leniently, JSON) body; None when unreadable."""
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if media == "application/json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            return None
        value = data.get("grant_type") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None
    if media not in ("application/x-www-form-urlencoded", ""):
        return None
    values = parse_qs(text).get("grant_type")
    return values[0] if values and len(values) == 1 else None
