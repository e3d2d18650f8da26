"""Property tests (hypothesis) for every parser that reads what someone else wrote.

* response parsers (``qes_async._client.protocol``): any status and body gives a value or a typed
  :class:`DecodeError` / :class:`ServiceError`, nothing else; well-formed bodies round-trip;
* the webhook receiver: any method, path, headers and body get a 2xx or 4xx answer, never
  an exception, never a 500, and never the "failed unexpectedly" fallback;
* stored flow state (``parse_state``): any JSON gives a state or :class:`StateFormatError`,
  and every dumped state parses back equal;
* the multipart/mixed reader: parts survive any chunking; any bytes give events or
  ``ValueError``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qes_async import DecodeError, ServiceError, Status, WebhookDispatcher
from qes_async._client.multipart import End, Headers, MultipartParser, PartData, PartEnd
from qes_async._client.protocol import (
    Response,
    _plain_json,
    error_from_response,
    parse_attempt,
    parse_details,
    parse_status,
    parse_token,
    parse_workflow,
    status_report,
)
from qes_async._client.validation import is_valid_id
from qes_async._flow.machine import Step
from qes_async._flow.state import (
    DocumentRecord,
    DownloadRecord,
    FlowState,
    Generation,
    StateFormatError,
    dump_state,
    parse_state,
)
from qes_async.webhooks import BasicAuth, BearerAuth, WebhookReceiver, _json_value

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
# Objects shaped like the service's answers, with fields of any type, so the parsers get
# past "not an object" and meet wrong types inside.
WIRE_KEYS = [
    "signatureId", "status", "statusCode", "errors", "workflowId", "clientId", "documents",
    "legalConditions", "passcode", "attemptId", "code", "message", "attemptsLeft",
    "access_token", "expires_in", "token_type", "documentId", "fileName", "sha256",
]  # fmt: skip
wire_objects = st.dictionaries(st.sampled_from(WIRE_KEYS), json_values, max_size=8)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    wire_objects.map(lambda v: json.dumps(v).encode()),
)
headers = st.dictionaries(
    st.sampled_from(["content-type", "x-request-id", "retry-after"]), st.text(max_size=30)
)


# ------------------------------------------------------------------------------ responses

PARSERS = {
    "status": parse_status,
    "details": parse_details,
    "workflow": parse_workflow,
    "attempt": lambda r: parse_attempt(r, "confirm_signature"),
    "token": lambda r: parse_token(r, 0.0),
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@SETTINGS
@given(body=bodies, head=headers)
def test_a_response_parser_gives_a_value_or_a_decode_error(
    name: str, body: bytes, head: dict[str, str]
) -> None:
    message = "parsed"
    try:
        PARSERS[name](Response(200, head, body))
    except DecodeError as exc:
        message = str(exc)
    assert message  # a value, or an error whose message says what was wrong


@SETTINGS
@given(data=wire_objects)
def test_a_parsed_id_or_status_was_text_or_a_number_on_the_wire(data: dict[str, Any]) -> None:
    try:
        report = parse_status(Response(200, {}, json.dumps(data).encode()))
    except DecodeError:
        return
    for key, value in (("signatureId", report.signature_id), ("status", report.status.value)):
        sent = data[key]
        assert isinstance(sent, (str, int, float))
        assert not isinstance(sent, bool)
        assert value == str(sent)


@SETTINGS
@given(
    signature_id=st.text(min_size=1, max_size=40),
    status=st.text(min_size=1, max_size=30),
    code=st.none() | st.integers(),
    extra=st.dictionaries(st.text(max_size=10).filter(lambda k: k not in WIRE_KEYS), json_values),
)
def test_a_well_formed_status_parses_to_what_was_sent(
    signature_id: str, status: str, code: int | None, extra: dict[str, Any]
) -> None:
    body = {**extra, "signatureId": signature_id, "status": status, "statusCode": code}
    report = parse_status(Response(200, {"x-request-id": "r-1"}, json.dumps(body).encode()))
    assert (report.signature_id, report.status, report.status_code) == (
        signature_id,
        Status(status),
        code,
    )
    assert report.request_id == "r-1"


def _loads_or_error(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        return type(exc)


# The same values as the wire may spell them: spaced or not, escaped or raw UTF-8, in
# UTF-16 or UTF-32 (which json.loads detects), with whitespace around, cut short.
spelled = st.builds(
    lambda value, indent, ascii_only, encoding, pad, cut: (
        pad + json.dumps(value, indent=indent, ensure_ascii=ascii_only) + pad
    ).encode(encoding)[: len(json.dumps(value)) * 4 - cut],
    json_values | wire_objects,
    st.none() | st.integers(0, 2),
    st.booleans(),
    st.sampled_from(["utf-8", "utf-16-le", "utf-16", "utf-32-le"]),
    st.sampled_from(["", " ", "\n"]),
    st.integers(0, 3),
)


@SETTINGS
@given(body=st.one_of(spelled, bodies, st.binary(max_size=40).map(lambda b: b"{" + b)))
def test_the_quick_json_read_agrees_with_json_loads_or_steps_aside(body: bytes) -> None:
    quick = _plain_json(body)
    assert quick is None or quick == json.loads(body)


def _loaded(read: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", read(text)
    except (ValueError, RecursionError) as error:
        return "error", type(error)


@SETTINGS
@given(
    text=st.one_of(
        spelled.map(lambda body: body.decode("utf-8", "replace")),
        st.text(max_size=40),
        st.text(max_size=40).map(lambda t: "{" + t),
        st.sampled_from([" {}", "{} ", "{}x", "{} {}", "", " ", "[" * 5000, "1", '"s"']),
    )
)
def test_the_receivers_json_read_is_json_loads(text: str) -> None:
    assert _loaded(_json_value, text) == _loaded(json.loads, text)


def test_the_quick_json_read_steps_aside_for_what_it_does_not_read() -> None:
    """Negative controls: each body json.loads reads (or refuses) its own way."""
    value = {"signatureId": "s", "status": "pending"}
    assert _plain_json(json.dumps(value).encode()) == value
    for body in (
        json.dumps(value).encode("utf-16-le"),  # starts with "{" too
        (json.dumps(value) + " ").encode(),  # whitespace after the object
        b"{" * 100_000,  # too deep
        b'{"a": "\xed\xa0\x80"}',  # a lone surrogate, which json.loads accepts
        b'{"a": 1} {"b": 2}',
    ):
        assert _plain_json(body) is None
        assert _loads_or_error(body) is not None


@SETTINGS
@given(body=st.one_of(spelled, bodies), head=headers)
def test_a_status_from_parts_is_what_parse_status_gives(body: bytes, head: dict[str, str]) -> None:
    def outcome(read: Any) -> Any:
        try:
            return read()
        except DecodeError as exc:
            return str(exc)

    fast = outcome(lambda: status_report(200, head, body, None))
    assert fast == outcome(lambda: _slow_parse_status(Response(200, head, body)))


def _slow_parse_status(response: Response) -> Any:
    """parse_status as it was before the quick JSON read: json.loads, then the same
    shape checks."""
    from qes_async._client import protocol

    data = protocol.decode_json(response, "get_signature_status")
    if type(data) is dict:
        sid, status, code = data.get("signatureId"), data.get("status"), data.get("statusCode")
        if (
            type(sid) is str
            and sid
            and type(status) is str
            and status
            and (code is None or type(code) is int)
            and not data.get("errors")
        ):
            return protocol.StatusReport(sid, Status(status), code, (), response.request_id)
    return protocol._structured(
        data, response, "get_signature_status", protocol.StatusReport, ["signatureId", "status"]
    )


@SETTINGS
@given(status=st.integers(min_value=400, max_value=599), body=bodies, head=headers)
def test_any_error_answer_maps_to_a_service_error_of_that_status(
    status: int, body: bytes, head: dict[str, str]
) -> None:
    error = error_from_response(Response(status, head, body), "get_signature_status")
    assert isinstance(error, ServiceError)
    assert error.status == status
    assert len(str(error)) < 2_000  # an excerpt, never the whole body


# ------------------------------------------------------------------------------ webhooks

PREFIX = "/fourthline/qes"
paths = st.one_of(
    st.text(max_size=60),
    st.text(max_size=40).map(lambda tail: f"{PREFIX}/{tail}"),
    st.sampled_from([PREFIX, f"{PREFIX}/", f"{PREFIX}/oauth2/token", f"{PREFIX}/s/x", "/"]),
)
request_headers = st.dictionaries(
    st.sampled_from(["Authorization", "Content-Type", "Content-Length", "X-Other"])
    | st.text(max_size=15),
    st.text(max_size=60)
    | st.sampled_from(
        ["Basic Zm91cnRobGluZTpwdw==", "Bearer abc", "application/json", "99999999", "Basic "]
    ),
    max_size=5,
)
webhook_bodies = st.one_of(
    bodies,
    st.fixed_dictionaries(
        {"signatureId": json_values | st.just("sig-1"), "status": json_values},
        optional={"statusCode": json_values, "errors": json_values},
    ).map(lambda v: json.dumps(v).encode()),
)


class _Unexpected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "failed unexpectedly" in record.getMessage():
            self.hits.append(record.getMessage())


@pytest.fixture
def unexpected() -> Iterator[_Unexpected]:
    handler = _Unexpected()
    logger = logging.getLogger("qes_async.webhooks")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("kind", ["basic", "bearer"])
@SETTINGS
@given(
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "post"]) | st.text(max_size=8),
    path=paths,
    head=request_headers,
    body=webhook_bodies,
)
def test_the_webhook_receiver_answers_2xx_or_4xx_to_anything(
    unexpected: _Unexpected,
    kind: str,
    method: str,
    path: str,
    head: dict[str, str],
    body: bytes,
) -> None:
    auth = BasicAuth("fourthline", "pw") if kind == "basic" else BearerAuth("fourthline", "pw")
    dispatcher = WebhookDispatcher()
    receiver = WebhookReceiver(dispatcher, auth, max_body=1024)
    answer = receiver.handle(method, path, head, body)
    assert 200 <= answer.status < 300 or 400 <= answer.status < 500, answer
    assert unexpected.hits == []


# What the receiver accepts: the client's id syntax, a status of 1 to 64 printable characters.
valid_ids = st.from_regex(r"[A-Za-z0-9._~-]{1,128}", fullmatch=True).filter(
    lambda v: v not in (".", "..")
)
valid_statuses = st.text(min_size=1, max_size=64).filter(str.isprintable)


@SETTINGS
@given(signature_id=valid_ids, status=valid_statuses, code=st.none() | st.integers())
def test_an_authenticated_well_formed_webhook_is_accepted_and_published(
    unexpected: _Unexpected, signature_id: str, status: str, code: int | None
) -> None:
    dispatcher = WebhookDispatcher()
    published: list[Any] = []
    dispatcher.publish = published.append  # type: ignore[method-assign]
    receiver = WebhookReceiver(dispatcher, BasicAuth("fourthline", "pw"))
    body = json.dumps({"signatureId": signature_id, "status": status, "statusCode": code})
    head = {"Authorization": "Basic Zm91cnRobGluZTpwdw==", "Content-Type": "application/json"}
    answer = receiver.handle("POST", f"{PREFIX}/{signature_id}", head, body.encode())
    assert answer.status == 204
    assert [(e.signature_id, e.status, e.status_code) for e in published] == [
        (signature_id, Status(status), code)
    ]
    assert unexpected.hits == []


@SETTINGS
@given(
    signature_id=st.text(
        st.characters(blacklist_characters="/", blacklist_categories=["Cs"]),
        min_size=1,
        max_size=140,
    ).filter(lambda v: not is_valid_id(v))
)
def test_a_webhook_whose_id_is_outside_the_id_syntax_is_404(
    unexpected: _Unexpected, signature_id: str
) -> None:
    dispatcher = WebhookDispatcher()
    published: list[Any] = []
    dispatcher.publish = published.append  # type: ignore[method-assign]
    receiver = WebhookReceiver(dispatcher, BasicAuth("fourthline", "pw"))
    body = json.dumps({"status": "signed"})
    head = {"Authorization": "Basic Zm91cnRobGluZTpwdw==", "Content-Type": "application/json"}
    answer = receiver.handle("POST", f"{PREFIX}/{signature_id}", head, body.encode())
    assert answer.status == 404
    assert published == []
    assert unexpected.hits == []


# ----------------------------------------------------------------------- stored flow state


@SETTINGS
@given(data=json_values | wire_objects | st.binary(max_size=100) | st.text(max_size=100))
def test_parse_state_gives_a_state_or_state_format_error(data: Any) -> None:
    result: object
    try:
        result = parse_state(data)
    except StateFormatError as exc:
        result = exc
    assert isinstance(result, (FlowState, StateFormatError))


STATE_KEYS = [
    "flow_id", "client_reference", "mobile_number", "documents", "created_at", "step",
    "generations", "downloads", "contract", "outcome", "error", "updated_at",
]  # fmt: skip


@SETTINGS
@given(
    fields=st.dictionaries(st.sampled_from(STATE_KEYS), json_values, max_size=12),
    version=st.sampled_from([1, 1, 1, 2, "1", None]),
)
def test_parse_state_on_state_shaped_junk_never_raises_anything_else(
    fields: dict[str, Any], version: Any
) -> None:
    with contextlib.suppress(StateFormatError):
        parse_state({"format": version, **fields})


texts = st.text(max_size=20)
_json_facts = st.recursive(  # what an evidence entry holds (no float; UTF-8 encodable)
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
floats = st.floats(allow_nan=False, allow_infinity=False)
states = st.builds(
    FlowState,
    flow_id=texts,
    client_reference=texts,
    mobile_number=texts,
    documents=st.lists(st.builds(DocumentRecord, texts, texts, st.integers(0), texts, texts)),
    created_at=floats,
    step=st.sampled_from(list(Step)),
    generations=st.lists(
        st.builds(
            Generation,
            number=st.integers(1, 9),
            started_at=floats,
            signature_id=st.none() | texts,
            in_flight=st.none() | st.sampled_from(["create", "approve", "confirm"]),
            deadlines=st.dictionaries(st.sampled_from(["consent", "confirmation"]), floats),
        ),
        max_size=3,
    ),
    downloads=st.lists(st.builds(DownloadRecord, texts, texts, texts, st.integers(0)), max_size=2),
    outcome=st.none() | st.sampled_from(["signed", "declined"]),
    updated_at=floats,
)


@SETTINGS
@given(state=states)
def test_every_dumped_state_parses_back_equal_through_json(state: FlowState) -> None:
    assert parse_state(json.dumps(dump_state(state))) == state


# Every field of every record, with odd values: any code point (lone surrogates too),
# ints where floats are stored, None in every optional field, empty and full lists, and
# now and then a float JSON refuses (NaN, infinity), which both paths must refuse.
odd_texts = st.text(st.characters(blacklist_categories=()), max_size=12)
numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70)
numbers = numbers | st.sampled_from([float("nan"), float("inf"), -0.0, 1e300, 5e-324])
maybe_texts = st.none() | odd_texts
maybe_numbers = st.none() | numbers
odd_downloads = st.builds(
    DownloadRecord, odd_texts, odd_texts, odd_texts, st.integers(0), odd_texts, maybe_texts,
    maybe_texts,
)  # fmt: skip
full_states = st.builds(
    FlowState,
    flow_id=odd_texts,
    client_reference=odd_texts,
    mobile_number=odd_texts,
    documents=st.lists(
        st.builds(DocumentRecord, odd_texts, odd_texts, st.integers(0), maybe_texts, maybe_texts),
        max_size=3,
    ),
    created_at=numbers,
    step=st.sampled_from(list(Step)),
    generations=st.lists(
        st.builds(
            Generation,
            number=st.integers(),
            started_at=numbers,
            reason=maybe_texts,
            signature_id=maybe_texts,
            in_flight=maybe_texts,
            in_flight_at=maybe_numbers,
            documents_uploaded=st.booleans(),
            document_ids=st.lists(odd_texts, max_size=3),
            approvals_sent=st.integers(),
            confirmations_sent=st.integers(),
            unconfirmed_creates=st.integers(),
            deadlines=st.dictionaries(odd_texts, numbers, max_size=3),
            last_status=maybe_texts,
            last_status_code=st.none() | st.integers(),
            ended=maybe_texts,
            ended_at=maybe_numbers,
        ),
        max_size=3,
    ),
    downloads=st.lists(odd_downloads, max_size=2),
    contract=st.none() | odd_downloads,
    outcome=maybe_texts,
    error=st.none() | st.dictionaries(odd_texts, json_values, max_size=3),
    updated_at=numbers,
    workflow_name=odd_texts,
)
_REFERENCE = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode


@SETTINGS
@given(
    state=full_states,
    notes=st.lists(
        st.lists(
            st.tuples(texts, st.dictionaries(texts, _json_facts, max_size=3), st.booleans()),
            max_size=3,
        ),
        max_size=4,
    ),
)
def test_a_checkpoints_text_written_from_the_records_is_the_reference_text(
    state: FlowState, notes: list[list[tuple[str, dict[str, Any], bool]]]
) -> None:
    """The text-only checkpoint (what the SDK's stores get) is, character for character,
    ``json.dumps`` of :func:`dump_state` (cattrs), at every checkpoint of a flow whose
    evidence grows between them."""
    from qes_async._flow.evidence import chain_entry
    from qes_async._flow.state import StateEncoder

    texts, datas = StateEncoder(), StateEncoder()
    for n, batch in enumerate([[], *notes]):
        for kind, data, _ in batch:
            chain_entry(state.evidence, kind, time=n, generation=n, data=data)
        state.updated_at = float(n)
        reference = _text_or_refusal(_REFERENCE, dump_state(state))
        assert _text_or_refusal(texts.text, state) == reference
        assert _text_or_refusal(lambda s: datas.encode(s).text, state) == reference


def _text_or_refusal(encode: Any, value: Any) -> str:
    try:
        return str(encode(value))
    except ValueError as exc:  # a float JSON cannot hold: refused alike
        return f"refused: {exc}"


# ----------------------------------------------------------------------------- multipart


def _events_to_parts(events: list[Any]) -> tuple[list[tuple[dict[str, str], bytes]], bool]:
    parts: list[tuple[dict[str, str], bytes]] = []
    ended = False
    for event in events:
        if isinstance(event, Headers):
            parts.append((dict(event), b""))
        elif isinstance(event, PartData):
            parts[-1] = (parts[-1][0], parts[-1][1] + bytes(event))
        elif isinstance(event, End):
            ended = True
        else:
            assert isinstance(event, PartEnd)
    return parts, ended


boundaries = st.text("abcdefghijklmnopqrstuvwxyz0123456789'()+_,-./:=?", min_size=1, max_size=40)


@SETTINGS
@given(
    boundary=boundaries,
    parts=st.lists(
        st.tuples(st.sampled_from(["text/plain", "application/pdf"]), st.binary(max_size=300)),
        min_size=1,
        max_size=4,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2_000), max_size=6),
)
def test_multipart_parts_survive_any_chunking(
    boundary: str, parts: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    delimiter = f"--{boundary}".encode()
    parts = [(ctype, data) for ctype, data in parts if b"\r\n" + delimiter not in b"\r\n" + data]
    body = b"preamble\r\n"
    for ctype, data in parts:
        body += delimiter + f"\r\nContent-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
    body += delimiter + b"--\r\nepilogue"
    parser = MultipartParser(boundary)
    events: list[Any] = []
    edges = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    for start, stop in itertools.pairwise(edges):
        events += parser.feed(body[start:stop])
    got, ended = _events_to_parts(events)
    assert ended
    assert parser.done
    assert got == [({"content-type": ctype}, data) for ctype, data in parts]


@SETTINGS
@given(
    boundary=boundaries,
    chunks=st.lists(
        st.binary(max_size=80)
        | st.sampled_from([b"--", b"\r\n", b"\r\n\r\n", b"--b", b"--b--", b"--b\r\n"]),
        max_size=12,
    ),
)
def test_multipart_reader_on_any_bytes_gives_events_or_value_error(
    boundary: str, chunks: list[bytes]
) -> None:
    parser = MultipartParser(boundary, max_header_size=64)
    events: list[object] = []
    refusal = ""
    try:
        for chunk in chunks:
            events += parser.feed(chunk)
    except ValueError as exc:
        refusal = str(exc)
    assert all(isinstance(e, (Headers, PartData, PartEnd, End)) for e in events)
    assert refusal in ("", "multipart part headers too large")


# ------------------------------------------------------------ evidence entries, put together

_facts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)


@SETTINGS
@given(
    data=st.dictionaries(st.text(max_size=8), _facts, max_size=5),
    kind=st.text(max_size=12),
    generation=st.integers(min_value=0, max_value=10**12),
    before=st.integers(min_value=0, max_value=3),
    time=st.floats(min_value=0, max_value=4e9),
)
def test_an_entry_put_together_is_its_canonical_form(
    data: dict[str, Any], kind: str, generation: int, before: int, time: float
) -> None:
    """``chain_entry`` builds the canonical text around the data's encoding instead of
    encoding the whole entry: the hash and the text are exactly the general form's."""
    from qes_async._flow import evidence as ev

    entries: list[dict[str, Any]] = []
    for n in range(before):
        ev.append_entry(entries, "x", time=0.0, generation=1, data={"n": n})
    entry, text = ev.chain_entry(entries, kind, time=time, generation=generation, data=data)
    assert entry["hash"] == ev.entry_hash(entry)
    assert text == ev.canonical_json(entry).decode("utf-8")
    assert json.loads(text) == entry
    assert entry["prev"] == (entries[-2]["hash"] if before else ev.GENESIS)


@given(
    posix=st.one_of(
        st.floats(min_value=-1e10, max_value=3e11, allow_nan=False),
        st.integers(min_value=0, max_value=2**34).map(lambda n: n / 1000),  # on a millisecond
        st.integers(min_value=0, max_value=2**40).map(lambda n: n / 1_000_000 + 0.0005),
    )
)
@settings(max_examples=400, deadline=None)
def test_an_evidence_instant_reads_as_datetime_writes_it(posix: float) -> None:
    from qes_async._flow import evidence

    try:
        expected = evidence._slow_instant(posix)
    except (OverflowError, ValueError, OSError) as exc:
        with pytest.raises(type(exc)):
            evidence.instant(posix)
        return
    assert evidence.instant(posix) == expected
    assert evidence.instant(posix) == expected  # again, from the remembered second


@given(value=st.text())
@settings(max_examples=300, deadline=None)
def test_a_path_value_is_quoted_as_urllib_quotes_it(value: str) -> None:
    from urllib.parse import quote

    from qes_async._client.routes import _quoted

    assert _quoted(value) == quote(value, safe="")
