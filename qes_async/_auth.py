"""The access-token cache: fetched on first use, refreshed ahead of expiry, single-flight.

However many calls need a token at once, one token request is made: the others wait for it
under a lock and then find the fresh token in the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ._protocol import Token

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
        self._issued_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _fresh(self, token: Token | None) -> bool:
        if token is None:
            return False
        life = token.expires_at - self._issued_at
        return self._time() < token.expires_at - min(self._margin, life / 2)

    async def get(self) -> Token:
        """A fresh token; at most one fetch runs at a time."""
        token = self._token
        if self._fresh(token):
            assert token is not None
            return token
        async with self._lock:
            if not self._fresh(self._token):
                self._issued_at = self._time()
                self.fetches += 1
                self._token = await self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self, token: Token) -> None:
        """Drop ``token`` if it is still the cached one (a 401 said it is dead)."""
        if self._token is token:
            self._token = None

    def __repr__(self) -> str:
        state = "empty" if self._token is None else f"expires_at={self._token.expires_at:.0f}"
        return f"TokenCache({state})"
