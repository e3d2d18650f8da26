"""The shared foundation: clock, open Status enum, converter, routes, redaction, errors, PDFs."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

import qes_async
from qes_async import (
    FakeClock,
    FlowExpiredError,
    InvalidInputError,
    InvalidPasscodeError,
    RateLimitedError,
    Routes,
    ServerError,
    SignatureDetails,
    Status,
    StatusReport,
    TooManyAttemptsError,
    make_pdf,
)
from qes_async._core.converter import structure, unstructure
from qes_async._core.errors import error_for_response
from qes_async._core.redact import excerpt, mask_phone, scrub

# ------------------------------------------------------------------------------- clock


async def test_fake_clock_actor_sleep_jumps_time_forward() -> None:
    clock = FakeClock(start=1000.0)
    await clock.sleep(7200)
    assert clock.time() == 8200.0


async def test_fake_clock_concurrent_sleeps_never_move_time_backwards() -> None:
    clock = FakeClock(start=0.0)
    await asyncio.gather(clock.sleep(10), clock.sleep(5))
    assert clock.time() == 10.0


async def test_fake_clock_timer_fires_only_when_time_reaches_it() -> None:
    clock = FakeClock(start=0.0)
    fired: list[float] = []
    clock.call_at(100.0, lambda: fired.append(clock.time()))
    clock.advance(99)
    assert fired == []
    clock.advance(1)
    assert fired == [100.0]


async def test_fake_clock_timers_fire_in_due_order_at_their_own_time() -> None:
    clock = FakeClock(start=0.0)
    fired: list[tuple[str, float]] = []
    clock.call_at(30.0, lambda: fired.append(("b", clock.time())))
    clock.call_at(10.0, lambda: fired.append(("a", clock.time())))
    clock.advance(3600)
    assert fired == [("a", 10.0), ("b", 30.0)]
    assert clock.time() == 3600.0


async def test_fake_clock_cancelled_timer_never_fires() -> None:
    clock = FakeClock(start=0.0)
    fired: list[int] = []
    handle = clock.call_at(5.0, lambda: fired.append(1))
    handle.cancel()
    clock.advance(10)
    assert fired == []
    assert clock.pending_timers == 0


async def test_fake_clock_passive_sleep_waits_for_someone_to_advance() -> None:
    clock = FakeClock(start=0.0)
    task = asyncio.create_task(clock.sleep_until(50.0, passive=True))
    await asyncio.sleep(0)
    assert not task.done()
    assert clock.next_timer() == 50.0
    clock.advance(50)
    await asyncio.wait_for(task, 1)
    assert clock.time() == 50.0


async def test_fake_clock_without_auto_advance_sleep_is_passive() -> None:
    clock = FakeClock(start=0.0, auto_advance=False)
    task = asyncio.create_task(clock.sleep(5))
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(5)
    await asyncio.wait_for(task, 1)


def test_fake_clock_refuses_to_go_backwards() -> None:
    with pytest.raises(ValueError, match="backwards"):
        FakeClock().advance(-1)


def test_fake_clock_now_is_aware_utc() -> None:
    assert FakeClock(start=0.0).now() == datetime(1970, 1, 1, tzinfo=timezone.utc)


# ------------------------------------------------------------------------------ models


def test_unknown_status_is_kept_not_an_error() -> None:
    status = Status("brand_new_status")
    assert status.value == "brand_new_status"
    assert not status.is_known
    assert Status("signed") is Status.SIGNED
    assert Status.SIGNED.is_known


def test_status_report_parses_leniently_and_keeps_unknown_status() -> None:
    report = structure(
        {"signatureId": "s1", "status": "later_status", "statusCode": None, "extra": [1]},
        StatusReport,
    )
    assert report == StatusReport(signature_id="s1", status=Status("later_status"))


def test_signature_details_round_trip_camel_case() -> None:
    wire = {
        "signatureId": "s1",
        "clientId": "c1",
        "verificationId": "v1",
        "mobileNumber": "+31612345678",
        "documents": [
            {"documentId": "d1", "fileName": "a.pdf", "displayName": "A", "sha256": "ab"}
        ],
        "legalConditions": [{"id": "t", "version": 3, "title": "T", "url": "u", "text": "x"}],
        "passcode": {"length": 6, "validitySeconds": 7200},
    }
    details = structure(wire, SignatureDetails)
    assert details.documents[0].document_id == "d1"
    assert details.passcode is not None
    assert details.passcode.validity_seconds == 7200
    assert unstructure(details) == wire


def test_details_repr_masks_mobile_number() -> None:
    details = SignatureDetails(signature_id="s", mobile_number="+31612345678")
    assert "+31612345678" not in repr(details)
    assert "+31******678" in repr(details)


# ------------------------------------------------------------------------------ routes


def test_routes_fill_and_quote_parameters() -> None:
    routes = Routes()
    assert routes.path("get_signature_status", id="a/b") == "/v1/signatures/a%2Fb/status"


def test_routes_accept_overrides_and_refuse_unknown_operations() -> None:
    routes = Routes.coerce({"confirm_signature": "/v2/s/{id}/confirm"})
    assert routes.path("confirm_signature", id="x") == "/v2/s/x/confirm"
    assert routes.create_workflow == "/v1/workflows"
    with pytest.raises(InvalidInputError, match="unknown operation"):
        Routes.coerce({"sign_everything": "/x"})


# --------------------------------------------------------------------------- redaction


def test_mask_phone_keeps_only_ends() -> None:
    assert mask_phone("+31612345678") == "+31******678"


def test_scrub_removes_tokens_passcodes_and_phones() -> None:
    text = scrub('{"passcode": "123456", "access_token": "tk-9f8e7d"} Bearer abc.def +31612345678')
    assert "123456" not in text
    assert "tk-9f8e7d" not in text
    assert "abc.def" not in text
    assert "+31612345678" not in text


def test_excerpt_masks_a_secret_cut_short_or_holding_an_escaped_quote() -> None:
    token = "eyJ" + "A" * 900  # longer than the excerpt reads
    assert "eyJA" not in excerpt(f'{{"access_token":"{token}"}}'.encode())
    assert scrub('{"client_secret":"s3cr\\"et", "x": 1}') == '{"client_secret":"***", "x": 1}'


def test_excerpt_never_dumps_pdf_bytes() -> None:
    assert excerpt(make_pdf("secret contract")).startswith("<PDF, ")


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("status", "code", "kwargs", "expected"),
    [
        (422, "flow_expired", {}, FlowExpiredError),
        (409, "invalid_passcode", {"attempts_left": 2}, InvalidPasscodeError),
        (429, "too_many_attempts", {}, TooManyAttemptsError),
        (429, None, {"retry_after": 3.0}, RateLimitedError),
        (503, None, {}, ServerError),
    ],
)
def test_error_for_response_picks_the_typed_error(
    status: int, code: str | None, kwargs: dict[str, float], expected: type[Exception]
) -> None:
    error = error_for_response(status, code=code, operation="op", **kwargs)  # type: ignore[arg-type]
    assert type(error) is expected
    assert error.status == status


def test_invalid_passcode_error_says_attempts_left_and_hides_the_passcode() -> None:
    error = error_for_response(
        409, code="invalid_passcode", attempts_left=1, body=b'{"passcode": "654321"}'
    )
    assert isinstance(error, InvalidPasscodeError)
    assert error.attempts_left == 1
    assert "1 attempts left" in str(error)
    assert "654321" not in str(error)


# --------------------------------------------------------------------------------- pdf


def test_make_pdf_is_a_pdf_of_at_least_the_padding() -> None:
    pdf = make_pdf("Loan contract", padding=10_000)
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert len(pdf) > 10_000


def test_public_names_resolve_lazily() -> None:
    import subprocess
    import sys

    code = (
        "import sys, qes_async\n"
        "before = 'qes_async._core.models' in sys.modules\n"
        "status = qes_async.Status\n"
        "print(before, 'qes_async._core.models' in sys.modules, status.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "True", "qes_async._core.models"]  # loaded on first use, not before
    assert qes_async.Status is Status
    with pytest.raises(AttributeError):
        _ = qes_async.NoSuchThing  # type: ignore[attr-defined]
