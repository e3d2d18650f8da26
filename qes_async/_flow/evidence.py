"""The evidence record: what a client was shown, approved and signed, as a hash chain.

Every flow keeps one, built as it runs and checkpointed with its state (so a flow resumed on
another worker continues the same chain).  Each entry carries the SHA-256 of the entry
before it and its own SHA-256, computed over its canonical JSON form: keys sorted, UTF-8,
no insignificant whitespace, and no floats (times are RFC 3339 strings in UTC, sizes and
counts integers), so the same facts always hash the same.  Appending costs one hash of one
entry; nothing already in the chain is hashed again.

The record never holds a passcode, a token, the client secret, document bytes or the full
mobile number (it is masked as everywhere else). It does hold the signing certificate's
subject, as the audit needs it, and that names the client and their ID document number:
keep the record as you keep the signed contract.

Appending costs one hash; the whole record is stored again with the flow state at every
checkpoint, as the rest of the state is (it grows by one entry per status, action and
download, a few dozen for a ceremony). A flow state holds its entries as their text in
the last checkpoint (:class:`EvidenceEntries`), decoded only when read.

:meth:`Evidence.verify` recomputes the chain and, given the folder of the signed files, their
SHA-256 and size, and names every entry or file that disagrees.  A hash chain shows that
nothing inside the record was changed, dropped or reordered since it was written; keep its
``final_hash`` apart from the record (your own database, a log) to also pin its end.
"""

from __future__ import annotations

import copy
import datetime
import enum
import hashlib
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, MutableSequence
from pathlib import Path
from typing import Any, overload

import attrs

from .._core.errors import FlowError

__all__ = [
    "EVIDENCE_FORMAT",
    "GENESIS",
    "Evidence",
    "EvidenceCheck",
    "EvidenceEntries",
    "EvidenceFormatError",
    "EvidenceProblem",
    "append_entry",
    "canonical_json",
    "instant",
]

#: The record's format; :meth:`Evidence.from_json` reads this one only.
EVIDENCE_FORMAT = "qes-async-evidence/1"
#: What the first entry carries as the previous entry's hash.
GENESIS = "0" * 64

_ENTRY_KEYS = frozenset({"seq", "kind", "time", "generation", "prev", "data", "hash"})
_RECORD_KEYS = frozenset({"format", "flow_id", "entries", "final_hash"})
# Entries that name a file saved to disk, checked by verify(documents_dir=...).
_FILE_KINDS = ("document_downloaded", "contract_downloaded")
_CHUNK = 1 << 20


class EvidenceFormatError(FlowError, ValueError):
    """An evidence record that cannot be read: not JSON, another format, or a wrong shape."""

    advice = (
        "The record was damaged or altered, or written by another version of qes_async; "
        "export it again from the flow store (qes-async evidence FLOW_ID)."
    )


def canonical_json(value: Any) -> bytes:
    """The canonical form that is hashed: sorted keys, UTF-8, compact, no floats.

    Raises:
        TypeError: a float (or another non-JSON value) inside ``value``.
    """
    if not _plain(value):
        _refuse_floats(value, "$")  # raises, naming where
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _plain(value: Any) -> bool:
    """Whether ``value`` holds only what the canonical form allows (no float, string
    keys); the quick test, with no path built unless it fails."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is dict:
        return all(type(key) is str and _plain(item) for key, item in value.items())
    if kind is list:
        return all(_plain(item) for item in value)
    return False  # anything else: the full check decides (and names it)


def _refuse_floats(value: Any, where: str) -> None:
    if isinstance(value, float):
        raise TypeError(f"evidence holds no floats ({where}); use an int or a string")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"evidence keys are strings ({where})")
            _refuse_floats(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for n, item in enumerate(value):
            _refuse_floats(item, f"{where}[{n}]")
    elif value is not None and not isinstance(value, (str, int, bool)):
        raise TypeError(f"evidence holds only JSON values ({where}: {type(value).__name__})")


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists and tuples copied; strings, numbers
    and anything else shared, as ``copy.deepcopy`` shares immutable values), without
    deepcopy's memo and dispatch: a flow's result copies its whole record."""
    kind = type(value)
    if kind is dict:
        return {key: _copy_json(item) for key, item in value.items()}
    if kind is list:
        return [_copy_json(item) for item in value]
    if kind is tuple:
        return tuple(_copy_json(item) for item in value)
    if kind in (str, int, float, bool) or value is None:
        return value
    return copy.deepcopy(value)


def instant(posix: float) -> str:
    """A POSIX instant as RFC 3339 UTC with milliseconds (``2026-12-02T20:20:46.123Z``).

    The same text as ``datetime.fromtimestamp(posix, utc).isoformat(timespec=
    "milliseconds")`` (microseconds rounded half to even, then cut to milliseconds), with
    the whole second's text remembered: a flow's entries fall in few seconds. Entries
    written at one instant (a step's, or many flows' on one clock) share one string: each
    parked flow holds its entries' times.
    """
    if not math.isfinite(posix):
        raise ValueError("an evidence time must be finite")
    global _last, _last_instant
    last = _last_instant  # one tuple, read at once (another thread may replace it)
    if last[0] == posix:
        return last[1]
    fraction, whole = math.modf(posix)  # as datetime splits it
    micros = round(fraction * 1e6)
    second = int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    last_second, text = _last  # one tuple: threads never see one's second, another's text
    if second != last_second:
        if not 0 <= second < _YEAR_10000:  # datetime's own range checks and errors
            return _slow_instant(posix)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last = (second, text)
    written = f"{text}.{micros // 1000:03d}Z"
    _last_instant = (posix, written)
    return written


_YEAR_10000 = 253_402_300_800  # the first second datetime cannot hold
_last: tuple[int, str] = (-1, "")  # the last whole second written, and its text
_last_instant: tuple[float, str] = (math.nan, "")  # the last instant written, and its text


def _slow_instant(posix: float) -> str:
    moment = datetime.datetime.fromtimestamp(posix, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The SHA-256 of an entry's canonical form, without its own ``hash``."""
    body = {key: value for key, value in entry.items() if key != "hash"}
    return _digest(canonical_json(body))


def _digest(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()


def append_entry(
    entries: MutableSequence[dict[str, Any]],
    kind: str,
    *,
    time: float,
    generation: int,
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """Append one entry to ``entries`` (a flow state's record, or a list), chained to the
    last one.

    ``None`` values in ``data`` are left out, so a fact that is not known takes no room.
    """
    return chain_entry(entries, kind, time=time, generation=generation, data=data)[0]


def chain_entry(
    entries: MutableSequence[dict[str, Any]],
    kind: str,
    *,
    time: float,
    generation: int,
    data: Mapping[str, Any],
) -> tuple[dict[str, Any], str]:
    """:func:`append_entry`, also giving the new entry's canonical text (with its hash).

    The data is encoded once: the entry's canonical form is put together around it (keys
    in sorted order: data, generation, [hash,] kind, prev, seq, time), hashed, and given
    back so that a checkpoint need not encode the entry again.
    """
    seq = len(entries)
    if type(entries) is EvidenceEntries:
        prev = entries._last if seq else GENESIS  # (last_hash(), without a call)
        if type(prev) is _Mark:
            prev = entries.last_hash()  # read from the last entry's text (or raises)
    else:
        prev = entries[-1]["hash"] if entries else GENESIS
    stamp = instant(time)
    try:
        facts = _compact(data)
    except _NotPlain:
        facts = None
    if facts is None:  # a float or a value that is not JSON: say which, and where
        body = {"seq": seq, "kind": kind, "time": stamp, "generation": generation}
        _refuse_floats({**body, "prev": prev, "data": _compact_any(data)}, "$")  # raises
        raise AssertionError("the full check allowed what _compact refused")
    entry: dict[str, Any] = {
        "seq": seq,
        "kind": kind,
        "time": stamp,
        "generation": generation,
        "prev": prev,
        "data": facts,
    }
    if type(kind) is str and type(prev) is str and type(generation) is int:
        head = f'{{"data":{_CANON(facts)},"generation":{generation}'
        tail = f'"kind":{_string(kind)},"prev":{_string(prev)},"seq":{seq},"time":"{stamp}"}}'
        digest = _digest(f"{head},{tail}".encode())
        text = f'{head},"hash":"{digest}",{tail}'
    else:  # not what a flow writes: the general form decides (and refuses what it must)
        digest = entry_hash(entry)
        text = ""
    entry["hash"] = digest
    # The form above has its hash as its last '"hash":"' (none can follow in the kind, prev
    # or time, JSON strings): the record finds it there again instead of holding it.
    findable = bool(text)
    text = text or canonical_json(entry).decode("utf-8")
    if type(entries) is EvidenceEntries:  # kept as its checkpoint text (the same if ASCII)
        added = entries._added  # (add_text(), without a call)
        kept = text if text.isascii() else _CHECKPOINT(entry)
        if added is None:
            entries._added = [kept]
        else:
            added.append(kept)
        entries._last = _IN_TEXT if findable else digest
    else:
        entries.append(entry)
    return entry, text


_CANON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
_string = json.encoder.encode_basestring  # a JSON string, UTF-8 kept (as _CANON writes it)


class _NotPlain(Exception):
    """A value :func:`_compact` does not take as it is (a float, or not JSON at all)."""


def _compact(value: Any) -> Any:
    """``value`` as plain JSON data: ``None`` values of mappings left out, keys made
    strings, tuples made lists, str and int subclasses (enums) made plain str and int.

    Raises:
        _NotPlain: a float or a value that is not JSON, for the full check to name.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {
            (key if type(key) is str else str(key)): _compact(item)
            for key, item in value.items()
            if item is not None
        }
    if kind is list or kind is tuple or isinstance(value, (list, tuple)):
        return [_compact(item) for item in value]
    if isinstance(value, str):
        # What the JSON encoder writes for a str subclass (an enum such as an operation's
        # name), interned: every flow's entries name the same few, one string for all.
        return sys.intern(str.__str__(value))
    if isinstance(value, int):  # bool is not subclassed: an int subclass (an enum)
        return int(value)
    raise _NotPlain


def _compact_any(value: Any) -> Any:
    """:func:`_compact` that leaves floats and other values in place (for the check)."""
    if isinstance(value, Mapping):
        return {str(k): _compact_any(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_compact_any(v) for v in value]
    return value


# What a checkpoint writes for an entry (tests/test_state_encoding.py holds the two to one
# text): sorted keys, compact, non-ASCII escaped, as the flow state's encoder writes it.
_CHECKPOINT = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode


class _Mark(enum.Enum):
    """What the record holds in place of its last entry's hash (kept by pickle and copy)."""

    NO_HASH = "no hash"  # the last entry has none (one not written by chain_entry)
    IN_TEXT = "in text"  # its text, written by chain_entry, has it as its last "hash"


_NO_HASH, _IN_TEXT = _Mark.NO_HASH, _Mark.IN_TEXT


class EvidenceEntries(MutableSequence[dict[str, Any]]):
    """A flow state's evidence entries, each held as its text in a checkpoint, decoded
    when read: a list of dicts to whoever indexes or iterates it, but one string to a
    waiting flow, and the entries already written into the last checkpoint are that
    checkpoint's own text (which the flow keeps anyway), not a copy.

    Every read decodes afresh: changing a dict read from it changes nothing here (assign
    the entry back to change it). A checkpoint takes :meth:`joined` as it is.
    """

    __slots__ = ("_added", "_count", "_end", "_last", "_start", "_text")

    def __init__(self, entries: Iterable[dict[str, Any]] = ()) -> None:
        self._text = ""  # a text whose [_start:_end] is the first _count entries, joined
        self._start = self._end = self._count = 0
        self._added: list[str] | None = None  # the entries after those, one text each
        self._last: Any = _NO_HASH  # the last entry's hash, or a _Mark
        self.extend(entries)

    # -------------------------------------------------------------- what the flow uses

    def last_hash(self) -> Any:
        """The last entry's ``hash`` (:data:`GENESIS` when there is none yet).

        Raises:
            KeyError: the last entry has no ``hash`` (as ``entries[-1]["hash"]`` would).
        """
        if not (self._count or self._added):
            return GENESIS
        if self._last is _IN_TEXT:
            added = self._added
            if added:
                text, start, end = added[-1], 0, len(added[-1])
            else:
                text, start, end = self._text, self._start, self._end
            at = text.rindex('"hash":"', start, end) + 8
            return text[at : at + 64]
        if self._last is _NO_HASH:
            raise KeyError("hash")
        return self._last

    def add_text(self, text: str, last_hash: Any) -> None:
        """Append an entry as its checkpoint text (ASCII), its hash given apart."""
        if self._added is None:
            self._added = [text]
        else:
            self._added.append(text)
        self._last = last_hash

    def joined(self) -> str:
        """Every entry's checkpoint text, joined by commas (what a checkpoint's list holds)."""
        added = self._added
        if not self._count:
            return ",".join(added) if added else ""
        held = self._text[self._start : self._end]
        return ",".join([held, *added]) if added else held

    def rebase(self, text: str, start: int, end: int) -> None:
        """Hold the entries as ``text[start:end]``: ``text`` is the checkpoint just written
        with :meth:`joined` at that place."""
        self._count += len(self._added or ())
        self._text, self._start, self._end, self._added = text, start, end, None

    def checkpointed(self) -> bool:
        """Whether every entry is in the text given to :meth:`rebase` (none added since)."""
        return bool(self._text) and not self._added

    def decoded(self) -> list[dict[str, Any]]:
        """The entries as fresh dicts (no one else holds them)."""
        joined = self.joined()
        if not joined:
            return []
        entries: list[dict[str, Any]] = json.loads(f"[{joined}]")
        return entries

    # ------------------------------------------------------- the list it stands in for

    def __len__(self) -> int:
        return self._count + len(self._added or ())

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self.decoded()[index]

    @overload
    def __setitem__(self, index: int, value: dict[str, Any]) -> None: ...

    @overload
    def __setitem__(self, index: slice, value: Iterable[dict[str, Any]]) -> None: ...

    def __setitem__(self, index: int | slice, value: Any) -> None:
        entries = self.decoded()
        entries[index] = value
        self._replace(entries)

    def __delitem__(self, index: int | slice) -> None:
        entries = self.decoded()
        del entries[index]
        self._replace(entries)

    def insert(self, index: int, value: dict[str, Any]) -> None:
        entries = self.decoded()
        entries.insert(index, value)
        self._replace(entries)

    def append(self, value: dict[str, Any]) -> None:
        self.add_text(_CHECKPOINT(value), _hash_of(value))

    def clear(self) -> None:
        self._replace([])

    def _replace(self, entries: list[dict[str, Any]]) -> None:
        texts = [_CHECKPOINT(entry) for entry in entries]  # all encoded before any is kept
        self._text, self._start, self._end, self._count = "", 0, 0, 0
        self._added = texts or None
        self._last = _hash_of(entries[-1]) if entries else _NO_HASH

    def __copy__(self) -> EvidenceEntries:  # as a list's copy: entries added to it are its own
        other = EvidenceEntries()
        other._text, other._start, other._end = self._text, self._start, self._end
        other._count, other._last = self._count, self._last
        other._added = None if self._added is None else list(self._added)
        return other

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.decoded())

    def __reversed__(self) -> Iterator[dict[str, Any]]:
        return iter(self.decoded()[::-1])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EvidenceEntries):
            return self.joined() == other.joined() or self.decoded() == other.decoded()
        if isinstance(other, list):
            return self.decoded() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:  # the entries, as a list shows them (never the whole text)
        return repr(self.decoded())


def _hash_of(entry: object) -> Any:
    if isinstance(entry, Mapping) and "hash" in entry:
        return entry["hash"]
    return _NO_HASH


@attrs.frozen
class EvidenceProblem:
    """One disagreement found by :meth:`Evidence.verify`.

    Attributes:
        where: what disagrees: ``entry 7 (status_observed)``, ``file loan.pdf``,
            ``final_hash``, ``flow_id`` or ``record`` (its bytes).
        detail: how it disagrees.
    """

    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.detail}"


@attrs.frozen
class EvidenceCheck:
    """The outcome of :meth:`Evidence.verify`: ``ok`` when nothing disagrees.

    Truthy when ok, so ``if record.verify(): ...`` reads as it should.
    """

    entries: int
    final_hash: str | None
    files_checked: int = 0
    problems: tuple[EvidenceProblem, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the chain and every checked file agree."""
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def as_json(self) -> dict[str, Any]:
        """The check as plain JSON data (``qes-async evidence --verify --json``)."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "final_hash": self.final_hash,
            "files_checked": self.files_checked,
            "problems": [{"where": p.where, "detail": p.detail} for p in self.problems],
        }


class Evidence:
    """A flow's evidence record (see :mod:`qes_async._flow.evidence` for what it holds).

    Get one from :attr:`FlowResult.evidence`, from a stored flow
    (``qes-async evidence FLOW_ID``), or from an exported file with :meth:`from_json`.
    """

    def __init__(
        self, flow_id: str, entries: Iterable[Mapping[str, Any]], *, final_hash: str | None = None
    ) -> None:
        # A copy: changing the record never changes the flow state it was taken from.
        self.flow_id = flow_id
        self._source: bytes | None = None  # the bytes it was read from, if any
        self._text: str | None = None  # the entries' checkpoint text, until first read
        self._count = 0
        if type(entries) is EvidenceEntries and final_hash is None and len(entries):
            try:
                last = entries.last_hash()
            except KeyError:  # an entry not written by the flow: decoded at once
                pass
            else:
                # Held as the checkpoint's text of its entries, one string (a flow's result
                # is kept by apps: dicts for its 15 entries would be four times as large);
                # decoded as fresh dicts when first read.
                self._text, self._count = entries.joined(), len(entries)
                self._entries: tuple[dict[str, Any], ...] = ()
                self.final_hash: str = str(last)
                return
        if type(entries) is EvidenceEntries:  # its entries decode as fresh dicts
            self._fill(tuple(entries.decoded()), final_hash)
        else:
            self._fill(tuple(_copy_json(dict(e)) for e in entries), final_hash)

    def _fill(self, entries: tuple[dict[str, Any], ...], final_hash: str | None) -> None:
        self._entries = entries
        last = entries[-1].get("hash") if entries else GENESIS
        self.final_hash = final_hash if final_hash is not None else str(last)

    @property
    def entries(self) -> tuple[dict[str, Any], ...]:
        """The entries, oldest first (each a dict of JSON data)."""
        text = self._text
        if text is not None:
            self._entries = tuple(json.loads(f"[{text}]"))
            self._text = None
        return self._entries

    # ------------------------------------------------------------------------ reading

    def to_json(self) -> str:
        """The record as its export form: JSON, sorted keys, indented, ending in a newline.

        The form is deterministic: :meth:`verify` of a record read back from a file also
        checks that its bytes are exactly this form, so no byte of it can change unseen.
        """
        return _export(self._as_data())

    def _as_data(self) -> dict[str, Any]:
        return {
            "format": EVIDENCE_FORMAT,
            "flow_id": self.flow_id,
            "entries": list(self.entries),
            "final_hash": self.final_hash,
        }

    @classmethod
    def from_json(cls, text: str | bytes) -> Evidence:
        """Read an exported record.

        Raises:
            EvidenceFormatError: not JSON, another format, or a wrong shape (naming where).
        """
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise EvidenceFormatError(
                f"the evidence record is not UTF-8 (byte {exc.start})"
            ) from None
        except json.JSONDecodeError as exc:
            raise EvidenceFormatError(
                f"the evidence record is not JSON (line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg})"
            ) from None
        if not isinstance(data, dict):
            raise EvidenceFormatError("the evidence record must be a JSON object")
        extra, missing = set(data) - _RECORD_KEYS, _RECORD_KEYS - set(data)
        if extra or missing:
            raise EvidenceFormatError(
                f"the evidence record has unknown fields {sorted(extra)} or misses "
                f"{sorted(missing)}"
            )
        if data["format"] != EVIDENCE_FORMAT:
            raise EvidenceFormatError(
                f"evidence format {data['format']!r} is not supported (this version reads "
                f"{EVIDENCE_FORMAT!r})"
            )
        entries = data["entries"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise EvidenceFormatError("the evidence record's entries must be a list of objects")
        for n, entry in enumerate(entries):
            _check_shape(n, entry)
        if not isinstance(data["flow_id"], str) or not isinstance(data["final_hash"], str):
            raise EvidenceFormatError("flow_id and final_hash must be strings")
        record = cls(data["flow_id"], entries, final_hash=data["final_hash"])
        record._source = raw
        return record

    # ------------------------------------------------------------------------ checking

    def verify(self, documents_dir: str | Path | None = None) -> EvidenceCheck:
        """Recompute the chain and, given a folder, the signed files' SHA-256 and size.

        Blocking (it reads the files): in async code run it with ``asyncio.to_thread``.
        Files are looked up by the ``file_name`` their entry records.

        Returns:
            an :class:`EvidenceCheck` whose ``problems`` name each entry or file that
            disagrees (empty when the record verifies).
        """
        problems: list[EvidenceProblem] = []
        prev = GENESIS
        for n, entry in enumerate(self.entries):
            where = _name(n, entry)
            if entry.get("seq") != n:
                problems.append(
                    EvidenceProblem(
                        where, f"is at position {n} but numbered {entry.get('seq')!r}: moved"
                    )
                )
            if entry.get("prev") != prev:
                problems.append(
                    EvidenceProblem(
                        where,
                        "does not carry the hash of the entry before it (moved, "
                        "removed or inserted)",
                    )
                )
            try:
                recomputed = entry_hash(entry)
            except (TypeError, ValueError) as exc:
                problems.append(EvidenceProblem(where, f"cannot be hashed ({exc})"))
                recomputed = None
            if recomputed != entry.get("hash"):
                problems.append(EvidenceProblem(where, "its content does not match its hash"))
            prev = str(entry.get("hash"))
        last = self.entries[-1].get("hash") if self.entries else GENESIS
        if self.final_hash != last:
            problems.append(EvidenceProblem("final_hash", "is not the hash of the last entry"))
        if not self.entries:
            problems.append(EvidenceProblem("record", "has no entries"))
        else:
            first = self.entries[0]
            started = first.get("data", {}).get("flow_id") if isinstance(first, dict) else None
            if first.get("kind") != "flow_started" or started != self.flow_id:
                problems.append(
                    EvidenceProblem("flow_id", "is not the flow the first entry started")
                )
        if self._source is not None:
            problems.extend(_byte_problems(self._source, self.to_json().encode("utf-8")))
        files = 0
        if documents_dir is not None:
            for n, entry in enumerate(self.entries):
                if entry.get("kind") in _FILE_KINDS:
                    files += 1
                    problems.extend(_file_problems(Path(documents_dir), n, entry))
        return EvidenceCheck(
            entries=len(self.entries),
            final_hash=self.final_hash,
            files_checked=files,
            problems=tuple(problems),
        )

    def __len__(self) -> int:
        return self._count if self._text is not None else len(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Evidence):
            return NotImplemented
        return self._as_data() == other._as_data()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Evidence(flow_id={self.flow_id!r}, entries={len(self)}, "
            f"final_hash={self.final_hash[:16]!r}...)"
        )


def _export(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _name(n: int, entry: Mapping[str, Any]) -> str:
    kind = entry.get("kind")
    return f"entry {n} ({kind})" if isinstance(kind, str) else f"entry {n}"


def _check_shape(n: int, entry: Mapping[str, Any]) -> None:
    keys = set(entry)
    if keys != _ENTRY_KEYS:
        raise EvidenceFormatError(
            f"entry {n} has unknown fields {sorted(keys - _ENTRY_KEYS)} or misses "
            f"{sorted(_ENTRY_KEYS - keys)}"
        )
    types = {"seq": int, "generation": int, "kind": str, "time": str, "prev": str, "hash": str}
    for key, kind in types.items():
        if not isinstance(entry[key], kind) or isinstance(entry[key], bool):
            raise EvidenceFormatError(f"entry {n}: {key} must be a {kind.__name__}")
    if not isinstance(entry["data"], dict):
        raise EvidenceFormatError(f"entry {n}: data must be an object")


def _byte_problems(source: bytes, expected: bytes) -> list[EvidenceProblem]:
    if source == expected:
        return []
    at = next(
        (i for i, (a, b) in enumerate(zip(source, expected, strict=False)) if a != b),
        min(len(source), len(expected)),
    )
    line = source.count(b"\n", 0, at) + 1
    return [
        EvidenceProblem(
            "record",
            f"its bytes differ from the export form at byte {at} (line {line}): changed "
            "outside qes_async",
        )
    ]


def _file_problems(folder: Path, n: int, entry: Mapping[str, Any]) -> list[EvidenceProblem]:
    data = entry.get("data", {})
    name = data.get("file_name") if isinstance(data, Mapping) else None
    if not isinstance(name, str) or not name or Path(name).name != name:
        return [EvidenceProblem(_name(n, entry), "names no file to check")]
    path = folder / name
    where = f"file {name}"
    try:
        digest, size = _sha256_of(path)
    except FileNotFoundError:
        return [EvidenceProblem(where, f"is missing from {folder} ({_name(n, entry)})")]
    except OSError as exc:
        return [EvidenceProblem(where, f"cannot be read ({exc.strerror or type(exc).__name__})")]
    problems = []
    if digest != data.get("sha256"):
        problems.append(EvidenceProblem(where, f"its SHA-256 is not the one in {_name(n, entry)}"))
    if size != data.get("size"):
        problems.append(
            EvidenceProblem(where, f"is {size} bytes, {_name(n, entry)} says {data.get('size')}")
        )
    return problems


def _sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
