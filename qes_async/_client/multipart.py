"""A small incremental reader for ``multipart/mixed`` answers (pure, push-style).

aiohttp's own reader buffers oddly on parts without Content-Length and emits deprecation
warnings there; this one is fed chunks as they arrive and never holds more than one chunk
plus a boundary's length, so a 50 MB part streams straight to disk.
"""

from __future__ import annotations

import enum

__all__ = ["End", "Headers", "MultipartParser", "PartData", "PartEnd"]


class Headers(dict[str, str]):
    """A part begins; its headers with lower-case names."""


class PartData(bytes):
    """Some bytes of the current part's body."""


class PartEnd:
    """The current part ended."""


class End:
    """The closing boundary was seen; the body is complete."""


Event = Headers | PartData | PartEnd | End


class _State(enum.Enum):
    PREAMBLE = 1
    AFTER_DELIMITER = 2
    HEADERS = 3
    BODY = 4
    DONE = 5


class MultipartParser:
    """Feed body chunks; get events back. ``done`` tells whether the body was complete."""

    def __init__(self, boundary: str, max_header_size: int = 16 * 1024) -> None:
        if not boundary:
            raise ValueError("multipart answer without a boundary")
        self._delimiter = b"--" + boundary.encode("latin-1")
        self._state = _State.PREAMBLE
        self._buffer = b""
        self._max_header = max_header_size

    @property
    def done(self) -> bool:
        """True once the closing boundary was read."""
        return self._state is _State.DONE

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; raise ValueError on a malformed body."""
        self._buffer += data
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def _step(self, events: list[Event]) -> bool:
        buf = self._buffer
        if self._state is _State.PREAMBLE:
            idx = buf.find(self._delimiter)
            if idx < 0 or (idx > 0 and not buf[:idx].endswith(b"\r\n")):
                self._buffer = buf[-len(self._delimiter) - 2 :] if idx < 0 else buf[idx + 1 :]
                return idx >= 0
            self._buffer = buf[idx + len(self._delimiter) :]
            self._state = _State.AFTER_DELIMITER
            return True
        if self._state is _State.AFTER_DELIMITER:
            if len(buf) < 2:
                return False
            if buf.startswith(b"--"):
                self._state, self._buffer = _State.DONE, b""
                events.append(End())
                return False
            end = buf.find(b"\r\n")
            if end < 0:
                return False
            self._buffer, self._state = buf[end + 2 :], _State.HEADERS
            return True
        if self._state is _State.HEADERS:
            return self._headers(events)
        if self._state is _State.BODY:
            return self._body(events)
        self._buffer = b""  # epilogue after the closing boundary: ignored
        return False

    def _headers(self, events: list[Event]) -> bool:
        buf = self._buffer
        if buf.startswith(b"\r\n"):
            raw, rest = b"", buf[2:]
        else:
            idx = buf.find(b"\r\n\r\n")
            if idx < 0:
                if len(buf) > self._max_header:
                    raise ValueError("multipart part headers too large")
                return False
            raw, rest = buf[:idx], buf[idx + 4 :]
        headers = Headers()
        for line in raw.decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        events.append(headers)
        self._buffer, self._state = rest, _State.BODY
        return True

    def _body(self, events: list[Event]) -> bool:
        buf = self._buffer
        marker = b"\r\n" + self._delimiter
        idx = buf.find(marker)
        if idx >= 0:
            if idx:
                events.append(PartData(buf[:idx]))
            events.append(PartEnd())
            self._buffer, self._state = buf[idx + len(marker) :], _State.AFTER_DELIMITER
            return True
        keep = len(marker) - 1  # a marker may straddle two chunks
        if len(buf) > keep:
            events.append(PartData(buf[:-keep]))
            self._buffer = buf[-keep:]
        return False
