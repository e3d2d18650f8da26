"""Consent, passcode and selfie submitted to any worker reach the worker driving the flow.

A flow waits for its signer in the :class:`~qes_async.SignerInbox` of the one worker that
drives it.  A submission arriving elsewhere becomes a row in the signer table plus a NOTIFY
(payload: row id, kind and flow id); the driving worker claims the row once its flow asks
for that answer (clearing the secret value in the same statement), hands it to its inbox,
writes the inbox's typed answer back and NOTIFYs.  The submitting request waits, bounded,
for that answer, and what it is told depends on the flow as the shared flows table shows
it (leases are read on the injected clock):

* the flow has finished: ``NO_SUCH_FLOW`` at once, and nothing is stored;
* the flow exists but nobody holds its lease (its worker died), or nobody claims the
  submission within ``answer_within`` (one second: its driver is gone, or its flow is
  between two questions): ``MOVING`` with a ``retry_after``; the row is *kept* and the
  flow's next driver uses it when its flow asks for that kind of answer (a later
  submission of the same kind for the same flow replaces a kept one);
* claimed, and the claimer's listening session ends (the claiming worker died) before the
  answer: ``MOVING`` at once; else, not answered within ``answer_timeout``: ``PENDING``;
* a flow the flows table does not know (driven without the shared store): ``NO_SUCH_FLOW``
  once nobody claimed it within ``claim_timeout``, and the row is withdrawn.

A submission whose submitting worker dies before a claim (and before it can withdraw the
row), or a kept one no driver ever used, would keep its secret (a passcode, a selfie) in the
table for good. Every submission older than ``submission_max_age`` (default
:data:`DEFAULT_SUBMISSION_MAX_AGE`, two hours: the longest window of the ceremony, the
consent window and the passcode's validity), and every one for a finished flow, is
therefore deleted by whichever worker is alive: in the same statement as each new
submission (the old ones), and on the safety poll (every 60th poll, as for questions). The
age is read from the database's clock (``recorded_at`` against ``now()``), the same clock
on every worker.

What a flow waits for is shown on every worker too: the driving worker's inbox reports
each question and its end, and the relay mirrors them into the asks table (the request
without any secret: documents, legal conditions, masked number, deadline, attempts left).
:meth:`SignerRelay.pending` reads it, showing a question only while its deadline has not
passed and the worker that asked still holds the flow's lease (a lease owner is the
worker's id, or the worker's id, a slash and the run's own id).
"""


# Table names are interpolated only from Tables, whose prefix is checked against
# [a-z_][a-z0-9_]*; every value is a bind parameter.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from .._core.converter import structure, unstructure
from .._core.errors import InvalidInputError
from .._core.redact import Secret, hold, reveal
from .._runtime.clock import Clock, SystemClock
from .._signers.signer import (
    AnswerKind,
    ConsentRequest,
    PasscodeRequest,
    SelfieRequest,
    SignerAnswer,
    SignerInbox,
    SignerRequest,
)
from ._listener import Listener, cancel_and_wait, wait_event
from ._schema import DEFAULT_PREFIX, Tables

__all__ = ["DEFAULT_SUBMISSION_MAX_AGE", "SignerRelay"]

#: Seconds an unclaimed signer submission may stay in the table (two hours: the longest
#: window of the ceremony); older ones are deleted, secret and all.
DEFAULT_SUBMISSION_MAX_AGE = 2 * 3600.0

log = logging.getLogger("qes_async.postgres")

_KINDS: dict[type, str] = {
    ConsentRequest: "consent",
    PasscodeRequest: "passcode",
    SelfieRequest: "selfie",
}
_REQUESTS: dict[str, type[SignerRequest]] = {kind: cls for cls, kind in _KINDS.items()}
_GONE = object()


class SignerRelay:
    """Delivers signer submissions across workers, with the driver's immediate answer.

    Args:
        pool: an asyncpg pool.
        listener: this worker's :class:`Listener`.
        inbox: this worker's :class:`~qes_async.SignerInbox` (the flows' signer).
        drives: ``flow_id -> bool``, whether this worker drives that flow now.
        worker_id: this worker's name (recorded as the claimer).
        prefix: the table name prefix.
        claim_timeout: seconds a submission for a flow the flows table does not know
            waits for a worker to claim it.
        answer_timeout: seconds a claimed submission waits for the answer (default: the
            inbox's + 5).
        answer_within: seconds a submission for a stored flow waits for its driver to claim
            it before answering ``MOVING`` (kept for the next driver).
        retry_after: seconds a ``MOVING`` answer tells the page to wait beyond what is
            left of a dead driver's lease (the worker passes its sweep interval + 1).
        poll_interval: safety re-read interval on both sides when a NOTIFY is missed.
        clock: the clock deadlines and leases are read from (share the worker's).
        submission_max_age: seconds after which a submission nobody claimed or withdrew
            (its submitting worker died) is deleted with its secret (default two hours).
    """

    def __init__(
        self,
        pool: Any,
        listener: Listener,
        inbox: SignerInbox,
        *,
        drives: Callable[[str], bool],
        worker_id: str,
        prefix: str = DEFAULT_PREFIX,
        claim_timeout: float = 5.0,
        answer_timeout: float | None = None,
        poll_interval: float = 1.0,
        clock: Clock | None = None,
        submission_max_age: float = DEFAULT_SUBMISSION_MAX_AGE,
        answer_within: float = 1.0,
        retry_after: float = 2.0,
    ) -> None:
        if not 0 < submission_max_age < float("inf"):
            raise InvalidInputError(
                "submission_max_age",
                f"must be a positive number of seconds, got {submission_max_age!r}",
                advice="keep the default (two hours) unless the ceremony's windows differ",
            )
        self.tables = Tables(prefix)
        self._submission_max_age = float(submission_max_age)
        self._clock = clock or SystemClock()
        self._asks: dict[str, SignerRequest | None] = {}  # changes not yet written
        self._publisher: asyncio.Task[None] | None = None
        self._closed = False
        self.pool = pool
        self.inbox = inbox
        self.worker_id = worker_id
        self._drives = drives
        self._claim_timeout = claim_timeout
        self._answer_within = answer_within
        self._retry_after = retry_after
        self._listener = listener
        inbox_timeout = float(getattr(inbox, "_answer_timeout", 30.0))
        self._answer_timeout = answer_timeout if answer_timeout is not None else inbox_timeout + 5
        self._poll_interval = poll_interval
        self._answered: dict[int, asyncio.Event] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.served = 0
        listener.add(self.tables.signer_channel, self._on_request)
        listener.add(self.tables.answers_channel, self._on_answer)
        listener.on_connect(self.serve_waiting)
        inbox.add_listener(self._on_ask)

    # ------------------------------------------------------------------- submitting side

    async def submit_consent(self, flow_id: str, approve: bool) -> SignerAnswer:
        """Approve (or decline) for the flow ``flow_id``, wherever it runs."""
        if self._asking_here(flow_id):
            return await self.inbox.submit_consent(flow_id, approve)
        return await self._submit(flow_id, "consent", "true" if approve else "false")

    async def submit_passcode(self, flow_id: str, passcode: str | Secret) -> SignerAnswer:
        """Give the SMS passcode to the flow ``flow_id``, wherever it runs."""
        code = hold(passcode)  # masked in every frame on the way (locals reach trackers)
        del passcode
        if self._asking_here(flow_id):
            return await self.inbox.submit_passcode(flow_id, code)
        return await self._submit(flow_id, "passcode", code)

    async def submit_selfie(self, flow_id: str, jpeg: bytes) -> SignerAnswer:
        """Give the selfie to the flow ``flow_id``, wherever it runs."""
        if self._asking_here(flow_id):
            return await self.inbox.submit_selfie(flow_id, jpeg)
        return await self._submit(flow_id, "selfie", base64.b64encode(jpeg).decode("ascii"))

    def _asking_here(self, flow_id: str) -> bool:
        # A flow driven here but between two questions (resyncing after a takeover) goes
        # through the table, where its answer is kept until it asks.
        return self._drives(flow_id) and self.inbox.pending(flow_id) is not None

    async def _submit(self, flow_id: str, kind: str, value: str | Secret) -> SignerAnswer:
        table, flows = self.tables.signer, self.tables.flows
        now = self._clock.time()
        row = await self.pool.fetchrow(
            # Each submission also deletes the stale ones a dead worker left behind, and
            # the kept one of the same kind it replaces; a finished flow stores nothing.
            f"WITH stale AS (DELETE FROM {table}"
            " WHERE recorded_at < now() - make_interval(secs => $5)"
            " OR (flow_id = $1 AND kind = $2 AND kept AND claimed_by IS NULL)),"
            f" flow AS (SELECT finished, lease_expires FROM {flows} WHERE flow_id = $1),"
            f" row AS (INSERT INTO {table} (flow_id, kind, value, generation)"
            " SELECT $1, $2, $3, (SELECT (request->>'generation')::int"
            f" FROM {self.tables.asks} WHERE flow_id = $1)"
            " WHERE NOT EXISTS (SELECT 1 FROM flow WHERE finished) RETURNING id)"
            " SELECT (SELECT id FROM row) AS id, (SELECT finished FROM flow) AS finished,"
            " (SELECT lease_expires FROM flow) AS lease_expires,"
            " (SELECT pg_notify($4, id::text || ' ' || $2 || ' ' || $1) FROM row) AS n",
            flow_id,
            kind,
            reveal(value),
            self.tables.signer_channel,
            self._submission_max_age,
        )
        if row["id"] is None:
            return SignerAnswer(AnswerKind.NO_SUCH_FLOW)  # it has finished: nothing waits
        row_id = int(row["id"])
        stored = row["finished"] is not None
        lease_left = max(0.0, float(row["lease_expires"]) - now) if stored else 0.0
        event = self._answered[row_id] = asyncio.Event()
        try:
            if stored and lease_left == 0.0:
                # Nobody drives it (its worker died): keep it for the next driver.
                answer = await self._keep(row_id, lease_left) or await self._await_answer(
                    row_id, event, stored=True, lease_left=lease_left
                )
            else:
                answer = await self._await_answer(
                    row_id, event, stored=stored, lease_left=lease_left
                )
        except BaseException:
            # Cancelled (the page's client went away) or failed: an unclaimed row would
            # keep the passcode in the table for a worker that may never come.
            await asyncio.shield(self._forget(row_id))
            raise
        finally:
            del self._answered[row_id]
        if answer.kind is AnswerKind.PENDING:
            await self._forget(row_id)  # nobody will read a later answer
        return answer

    async def _keep(self, row_id: int, lease_left: float) -> SignerAnswer | None:
        """Mark an unclaimed submission kept for the next driver; None if claimed."""
        kept = await self.pool.fetchval(
            f"UPDATE {self.tables.signer} SET kept = true"
            " WHERE id = $1 AND claimed_by IS NULL RETURNING id",
            row_id,
        )
        if kept is None:
            return None
        return SignerAnswer(AnswerKind.MOVING, retry_after=lease_left + self._retry_after)

    async def _forget(self, row_id: int) -> None:
        with contextlib.suppress(Exception):
            await self.pool.execute(f"DELETE FROM {self.tables.signer} WHERE id = $1", row_id)

    async def _await_answer(
        self, row_id: int, event: asyncio.Event, *, stored: bool, lease_left: float
    ) -> SignerAnswer:
        loop = asyncio.get_running_loop()
        claim_by = loop.time() + (self._answer_within if stored else self._claim_timeout)
        answer_by: float | None = None
        table = self.tables.signer
        while True:
            row = await self.pool.fetchrow(
                "SELECT claimed_by, answer, attempts_left, claimed_pid IS NULL OR EXISTS"
                " (SELECT 1 FROM pg_stat_activity WHERE pid = claimed_pid) AS claimer_alive"
                f" FROM {table} WHERE id = $1",
                row_id,
            )
            now = loop.time()
            if row is not None and row["answer"] is not None:
                await self.pool.execute(f"DELETE FROM {table} WHERE id = $1", row_id)
                return SignerAnswer(AnswerKind(row["answer"]), row["attempts_left"])
            if row is not None and row["claimed_by"] is None and now >= claim_by:
                if stored:
                    kept = await self._keep(row_id, lease_left)
                    if kept is not None:
                        return kept
                    continue  # claimed in between: read it again
                withdrawn = await self.pool.fetchval(
                    f"DELETE FROM {table} WHERE id = $1 AND claimed_by IS NULL RETURNING id",
                    row_id,
                )
                if withdrawn is not None:
                    return SignerAnswer(AnswerKind.NO_SUCH_FLOW)
                continue  # claimed in between: read it again
            if row is not None and row["claimed_by"] is not None:
                if not row["claimer_alive"]:
                    # Its claimer died before answering: its flow's next driver asks again.
                    await self._forget(row_id)
                    return SignerAnswer(AnswerKind.MOVING, retry_after=self._retry_after)
                if answer_by is None:
                    answer_by = now + self._answer_timeout
            if row is None or (answer_by is not None and now >= answer_by):
                return SignerAnswer(AnswerKind.PENDING)
            poll = self._poll_interval if answer_by is None else min(self._poll_interval, 0.5)
            wake = min(claim_by if answer_by is None else answer_by, now + poll)
            await wait_event(event, wake - now)
            event.clear()

    def _on_answer(self, payload: str) -> None:
        event = self._answered.get(int(payload))
        if event is not None:
            event.set()

    async def pending(self, flow_id: str) -> SignerRequest | None:
        """What the flow ``flow_id`` waits for from its signer, wherever it runs; or None."""
        if self._drives(flow_id):
            return self.inbox.pending(flow_id)
        now = self._clock.time()
        row = await self.pool.fetchrow(
            f"SELECT a.kind, a.request FROM {self.tables.asks} AS a"
            f" LEFT JOIN {self.tables.flows} AS f ON f.flow_id = a.flow_id"
            " WHERE a.flow_id = $1 AND a.deadline > $2 AND (f.flow_id IS NULL"
            " OR (f.lease_expires > $2 AND (f.lease_owner = a.worker_id"
            " OR left(f.lease_owner, length(a.worker_id) + 1) = a.worker_id || '/')))",
            flow_id,
            now,
        )
        if row is None or row["kind"] not in _REQUESTS:
            return None
        return structure(json.loads(row["request"]), _REQUESTS[row["kind"]])

    # ---------------------------------------------------------------------- driving side

    def _on_ask(self, flow_id: str, request: SignerRequest | None) -> None:
        if self._closed:
            return  # the worker is going: its leases end, which hides its questions
        self._asks[flow_id] = request
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(
                self._publish(), name="qes-postgres-asks"
            )

    async def _publish(self) -> None:
        """Write the inbox's changes in order, the latest per flow (coalesced)."""
        table = self.tables.asks
        while self._asks:
            flow_id, request = next(iter(self._asks.items()))
            try:
                if request is None:
                    await self.pool.execute(
                        f"DELETE FROM {table} WHERE flow_id = $1 AND worker_id = $2",
                        flow_id,
                        self.worker_id,
                    )
                else:
                    # The same statement finds the answers kept for this flow while it
                    # had no question (its driver died, or it was between two).
                    waiting = await self.pool.fetch(
                        f"WITH ask AS (INSERT INTO {table}"
                        " (flow_id, worker_id, kind, request, deadline)"
                        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (flow_id) DO UPDATE SET"
                        " worker_id = $2, kind = $3, request = $4, deadline = $5)"
                        f" SELECT id FROM {self.tables.signer}"
                        " WHERE flow_id = $1 AND claimed_by IS NULL ORDER BY id",
                        flow_id,
                        self.worker_id,
                        _KINDS[type(request)],
                        json.dumps(unstructure(request)),
                        request.deadline,
                    )
                    if self._drives(flow_id):
                        for found in waiting:
                            self._spawn(found["id"], flow_id)
            except Exception as exc:  # a page shows nothing; the flow itself goes on
                log.warning("could not publish a signer question (%s)", type(exc).__name__)
            if self._asks.get(flow_id, _GONE) is request:
                del self._asks[flow_id]  # else it changed meanwhile: write the newer one

    def _on_request(self, payload: str) -> None:
        row_id, _, rest = payload.partition(" ")
        _kind, _, flow_id = rest.partition(" ")
        if self._drives(flow_id):
            self._spawn(int(row_id), flow_id)

    async def serve_waiting(self) -> int:
        """Claim every waiting submission for a flow this worker drives; returns how many.

        Runs after each (re)connection of the listener and on the worker's slow poll.
        """
        rows = await self.pool.fetch(
            f"SELECT id, flow_id FROM {self.tables.signer} WHERE claimed_by IS NULL ORDER BY id"
        )
        mine = [
            (row["id"], row["flow_id"])
            for row in rows
            if self._drives(row["flow_id"]) and self.inbox.pending(row["flow_id"]) is not None
        ]
        for row_id, flow_id in mine:
            self._spawn(row_id, flow_id)
        return len(mine)

    def _spawn(self, row_id: int, flow_id: str) -> None:
        if self.inbox.pending(flow_id) is None:
            # Its flow asks nothing now (it is resyncing, or between two questions): the
            # row waits, and the flow's next question finds it (see _publish).
            return
        task = asyncio.create_task(self._serve(row_id))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, row_id: int) -> None:
        table = self.tables.signer
        try:
            row = await self.pool.fetchrow(
                f"UPDATE {table} AS t SET claimed_by = $2, claimed_pid = $3, value = NULL FROM"
                f" (SELECT id, value FROM {table} WHERE id = $1 AND claimed_by IS NULL"
                " FOR UPDATE) AS old WHERE t.id = old.id"
                " RETURNING t.flow_id, t.kind, t.kept, t.generation, old.value",
                row_id,
                self.worker_id,
                self._listener.backend_pid,
            )
            if row is None:
                return  # another worker, or a withdrawn submission
            # The record's repr shows the value (a passcode): only a Secret of it is kept.
            flow_id, kind, shown = row["flow_id"], row["kind"], row["generation"]
            value = hold(row["value"] or "")
            del row
            asked = self.inbox.pending(flow_id)
            if shown is not None and asked is not None and asked.generation != shown:
                # Answers a question of an earlier workflow (the flow restarted meanwhile):
                # a passcode from an older SMS must not cost the new one an attempt.
                answer = SignerAnswer(AnswerKind.EXPIRED)
            else:
                answer = await self._hand_over(flow_id, kind, value)
            # A kept submission's submitter has gone: nobody reads the answer.
            await self.pool.execute(
                f"WITH gone AS (DELETE FROM {table} WHERE id = $1 AND kept),"
                f" row AS (UPDATE {table} SET answer = $2, attempts_left = $3"
                " WHERE id = $1 AND NOT kept RETURNING id)"
                " SELECT pg_notify($4, row.id::text) FROM row",
                row_id,
                answer.kind.value,
                answer.attempts_left,
                self.tables.answers_channel,
            )
            self.served += 1
        except Exception as exc:
            log.warning("could not serve a signer submission (%s)", type(exc).__name__)

    async def _hand_over(self, flow_id: str, kind: str, value: Secret) -> SignerAnswer:
        if kind == "consent":
            return await self.inbox.submit_consent(flow_id, value.reveal() == "true")
        if kind == "passcode":
            return await self.inbox.submit_passcode(flow_id, value)
        if kind == "selfie":
            return await self.inbox.submit_selfie(flow_id, base64.b64decode(value.reveal()))
        return SignerAnswer(AnswerKind.NOT_ASKED)

    async def start(self) -> None:
        """Start the slow safety poll for submissions whose NOTIFY was missed."""
        if self._task is None:
            self._task = asyncio.create_task(self._poll(), name="qes-postgres-signer")

    async def close(self) -> None:
        """Stop polling, serving and publishing questions."""
        self._closed = True
        tasks, self._task = (self._task, self._publisher, *self._serving), None
        await cancel_and_wait(*tasks)

    async def prune_questions(self) -> int:
        """Delete questions whose deadline passed a minute ago; returns how many.

        A worker that dies while its flow waits leaves its question behind (hidden, since
        its lease runs out); the safety poll clears such rows once they can no longer be
        answered.
        """
        deleted = await self.pool.fetchval(
            f"WITH gone AS (DELETE FROM {self.tables.asks} WHERE deadline < $1 RETURNING 1)"
            " SELECT count(*) FROM gone",
            self._clock.time() - 60,
        )
        return int(deleted)

    async def prune_submissions(self) -> int:
        """Delete submissions older than ``submission_max_age``, and those for a flow that
        has finished; returns how many.

        Their submitting worker died before a claim, or they were kept for a flow that
        ended without asking again, so nobody will withdraw them; an unclaimed one still
        holds its secret.
        """
        status = await self.pool.execute(
            f"DELETE FROM {self.tables.signer} AS s"
            " WHERE s.recorded_at < now() - make_interval(secs => $1)"
            f" OR EXISTS (SELECT 1 FROM {self.tables.flows} AS f"
            " WHERE f.flow_id = s.flow_id AND f.finished)",
            self._submission_max_age,
        )
        return int(status.split()[-1])

    async def _poll(self) -> None:
        polls = 0
        while True:
            await self._clock.sleep_until(self._clock.time() + self._poll_interval, passive=True)
            polls += 1
            with contextlib.suppress(Exception):
                await self.serve_waiting()
                if polls % 60 == 0:
                    await self.prune_submissions()
                    await self.prune_questions()

    def __repr__(self) -> str:
        return f"SignerRelay(worker_id={self.worker_id!r}, served={self.served})"
