"""Webhook delivery, as Fourthline does it: POST ``{base}/{signatureId}`` on each change.

Authentication is Basic (the integrator's user and password) or Bearer: a token is first
fetched from the integrator's AuthUrl with HTTP Basic and a client-credentials grant (form
body), cached until it expires, and sent as ``Authorization: Bearer``. A non-2xx answer or
a connection error is retried with exponential backoff on the sandbox clock. The webhook
fault plan may drop, duplicate, delay or reorder deliveries.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import aiohttp
import attrs
import backoff

from .._runtime.clock import Clock
from ._faults import WEBHOOK_FAULTS, Fault, FaultPlan

__all__ = ["WebhookConfig", "WebhookDelivery", "WebhookSender"]

log = logging.getLogger("qes_async.sandbox.webhooks")


def basic_auth(user: str, password: str) -> str:
    """An HTTP Basic ``Authorization`` value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@attrs.frozen
class WebhookConfig:
    """Where and how to deliver: ``basic=(user, password)`` or
    ``bearer=(auth_url, user, password)`` (or neither, for no authentication)."""

    url: str
    basic: tuple[str, str] | None = attrs.field(default=None, repr=False)
    bearer: tuple[str, str, str] | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.basic is not None and self.bearer is not None:
            raise ValueError("choose basic or bearer authentication, not both")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("the webhook URL must be http(s)")

    def target(self, signature_id: str) -> str:
        """The URL for one signature: the base with the id appended."""
        return f"{self.url.rstrip('/')}/{signature_id}"


@attrs.frozen
class WebhookDelivery:
    """One delivery attempt (or a fault that replaced it)."""

    signature_id: str
    status: str
    attempt: int
    http_status: int | None
    error: str | None
    time: float
    fault: str | None


class WebhookSender:
    """Sends status changes to the configured webhook, in background tasks.

    Args:
        clock: backoff, delays and token expiry read it (timers only: never moves it).
        seed: seeds the webhook fault plan.
        max_attempts: deliveries per event before giving up.
        backoff: first retry delay in clock seconds; doubles each retry.
        timeout: real seconds the receiver may take to accept the connection, and
            between reads of its answer; time spent queued for a connection is not counted.
        reorder_hold: a webhook held back by a ``reorder`` fault goes out after the next
            one, or after this many clock seconds if no other comes (reordered, not lost).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        seed: int | None = None,
        max_attempts: int = 6,
        backoff: float = 1.0,
        timeout: float = 5.0,
        reorder_hold: float = 30.0,
    ) -> None:
        self.clock = clock
        self.reorder_hold = reorder_hold
        self._flush_timer: Any = None
        self.config: WebhookConfig | None = None
        self.faults = FaultPlan(WEBHOOK_FAULTS, seed)
        self.deliveries: list[WebhookDelivery] = []
        self.max_attempts = max_attempts
        self.backoff = backoff
        # The receiver's own slowness times out, not the wait for a pooled connection:
        # a burst of thousands of status changes must queue, not be counted as lost.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: list[dict[str, Any]] = []
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()

    def configure(self, config: WebhookConfig | None) -> None:
        """Set (or with ``None`` remove) the delivery target."""
        self.config = config
        self._token = None

    def notify(self, body: dict[str, Any]) -> None:
        """Queue one status change (called synchronously by the service)."""
        if self.config is None:
            return
        fault = self.faults.pick(body["status"])
        held, self._held = self._held, []
        if fault is not None and fault.kind == "reorder":
            self._record(body, 0, None, None, fault.kind)
            self._held = [*held, body]
            if self._flush_timer is None:
                when = self.clock.time() + self.reorder_hold
                self._flush_timer = self.clock.call_at(when, self._flush_held)
            return
        self._dispatch(body, fault)
        if held and self._flush_timer is not None:
            self._flush_timer.cancel()  # they go now; a later hold arms its own timer
            self._flush_timer = None
        for late in held:
            self._dispatch(late, None)

    def _flush_held(self) -> None:
        """Send what a ``reorder`` fault held back when no later webhook came for it."""
        self._flush_timer = None
        held, self._held = self._held, []
        for late in held:
            self._dispatch(late, None)

    def _dispatch(self, body: dict[str, Any], fault: Fault | None) -> None:
        kind = fault.kind if fault else None
        if kind == "drop":
            self._record(body, 0, None, None, kind)
            return
        delay = fault.delay if fault is not None and kind == "delay" else 0.0
        copies = 2 if kind == "duplicate" else 1
        for _ in range(copies):
            self._spawn(self._deliver(body, delay, kind))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _record(
        self,
        body: dict[str, Any],
        attempt: int,
        status: int | None,
        error: str | None,
        fault: str | None,
    ) -> None:
        self.deliveries.append(
            WebhookDelivery(
                body["signatureId"],
                body["status"],
                attempt,
                status,
                error,
                self.clock.time(),
                fault,
            )
        )

    async def _deliver(self, body: dict[str, Any], delay: float, fault: str | None) -> None:
        if delay > 0:
            await self.clock.sleep_until(self.clock.time() + delay, passive=True)
        waits = backoff.expo(base=2, factor=self.backoff)  # 1x, 2x, 4x... the first delay
        waits.send(None)  # prime: backoff's generators yield once before the first value
        for attempt in range(1, self.max_attempts + 1):
            status, error = await self._post(body)
            self._record(body, attempt, status, error, fault)
            if status is not None and 200 <= status < 300:
                return
            if attempt < self.max_attempts:
                await self.clock.sleep_until(self.clock.time() + next(waits), passive=True)
        log.warning("webhook for %s gave up after %d attempts", body["signatureId"], attempt)

    async def _post(self, body: dict[str, Any]) -> tuple[int | None, str | None]:
        config = self.config
        if config is None:
            return None, "webhooks are no longer configured"
        try:
            headers = await self._auth_headers(config)
            async with self._http().post(
                config.target(body["signatureId"]), json=body, headers=headers
            ) as response:
                await response.read()
                if response.status == 401:
                    self._token = None
                return response.status, None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            return None, type(exc).__name__
        except Exception as exc:  # a sandbox bug must not kill the delivery silently
            log.exception("webhook delivery failed unexpectedly")
            return None, type(exc).__name__

    async def _auth_headers(self, config: WebhookConfig) -> dict[str, str]:
        if config.basic is not None:
            return {"Authorization": basic_auth(*config.basic)}
        if config.bearer is None:
            return {}
        async with self._token_lock:  # concurrent deliveries share one token fetch
            if self._token is None or self.clock.time() >= self._token[1]:
                self._token = await self._fetch_token(*config.bearer)
            token = self._token[0]
        return {"Authorization": f"Bearer {token}"}

    async def _fetch_token(self, auth_url: str, user: str, password: str) -> tuple[str, float]:
        async with self._http().post(
            auth_url,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": basic_auth(user, password)},
        ) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message="token refused"
                )
            payload = await response.json(content_type=None)
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str):
            raise ValueError("the AuthUrl answered no access_token")
        expires = payload.get("expires_in", 3600)
        lifetime = float(expires) if isinstance(expires, (int, float)) else 3600.0
        return token, self.clock.time() + max(0.0, lifetime - 30)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        """Cancel pending deliveries and close the HTTP session; later changes are not sent."""
        self.config = None  # a timer or a late request must not reopen the session
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
