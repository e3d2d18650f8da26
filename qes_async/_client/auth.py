"""The access-token cache: fetched on first use, refreshed ahead of expiry, single-flight.

However many calls need a token at once, one token request is made: the others wait for it
under a lock and then find the fresh token in the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .protocol import Token

__all__ = ["TokenCache"]


class TokenCache:
    """Holds one token; ``fetch`` gets a new one, ``clock`` says when it is stale.

    A token counts as stale ``margin`` seconds before it expires (at most half its life),
    so that a call never starts with a token about to die.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Token]],
        clock_time: Callable[[], float],
        margin: float = 60.0,
    ) -> None:
        self._fetch = fetch
        self._time = clock_time
        self._margin = margin
        self._token: Token | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    def current(self, now: float | None = None) -> Token | None:
        """The cached token if it is fresh, without waiting (the hot path of every call);
        ``now`` is the clock's time when the caller just read it."""
        if self._token is not None and (self._time() if now is None else now) < self._refresh_at:
            return self._token
        return None

    async def get(self) -> Token:
        """A fresh token; at most one fetch runs at a time."""
        token = self._token
        if token is not None and self._time() < self._refresh_at:
            return token
        async with self._lock:
            token = self._token
            if token is None or self._time() >= self._refresh_at:
                issued_at = self._time()
                token = await self._fetch()
                # Stale `margin` seconds before expiry (at most half the token's life), so
                # that a call never starts with a token about to die.
                life = token.expires_at - issued_at
                self._refresh_at = token.expires_at - min(self._margin, life / 2)
                self._token = token
            return token

    def invalidate(self, token: Token) -> bool:
        """Drop ``token`` if it is still the cached one (a 401 said it is dead).

        Returns True when it was: the caller is the one who found the token dead. False
        means the cache had already moved on (another call saw the 401 first).
        """
        if self._token is token:
            self._token = None
            return True
        return False

    def __repr__(self) -> str:
        state = "empty" if self._token is None else f"expires_at={self._token.expires_at:.0f}"
        return f"TokenCache({state})"
