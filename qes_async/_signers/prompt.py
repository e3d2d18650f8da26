"""Read answers from a terminal without blocking the event loop or Ctrl+C.

A prompt read in a worker thread cannot be interrupted: Ctrl+C cancels the flow, and then
the program waits for the thread until Enter is pressed (with no echo at a passcode prompt,
so it looks frozen). :class:`LineReader` instead watches standard input from the event
loop (``loop.add_reader``): a cancelled read ends at once, and turning echo off for a
passcode is undone in a ``finally``, so the terminal is never left without echo.

Where the loop cannot watch a file (Windows' proactor loop), it falls back to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["LineReader", "has_terminal"]


def has_terminal() -> bool:
    """Whether standard input is a terminal a person can answer on."""
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):
        return False


class LineReader:
    """Reads lines from a file descriptor (standard input by default), one at a time.

    Prompts go to ``prompts`` (standard error by default), so that a command's standard
    output stays machine-readable. Lines that arrive together (a pipe) are kept for the
    next reads.
    """

    def __init__(self, fd: int | None = None, prompts: IO[str] | None = None) -> None:
        self._fd = fd
        self._prompts = prompts
        self._buffer = bytearray()
        self._eof = False

    @property
    def fd(self) -> int:
        return sys.stdin.fileno() if self._fd is None else self._fd

    def _say(self, text: str) -> None:
        out = self._prompts or sys.stderr
        out.write(text)
        out.flush()

    async def read(self, prompt: str, *, echo: bool = True) -> str:
        """One line without its end; :class:`EOFError` when the input has ended."""
        self._say(prompt)
        with self._no_echo(enabled=not echo):
            line = await self._line()
        if not echo:
            self._say("\n")  # the Enter the terminal did not echo
        return line

    async def _line(self) -> str:
        while b"\n" not in self._buffer and not self._eof:
            chunk = await self._chunk()
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True
        if not self._buffer and self._eof:
            raise EOFError("the input ended before an answer was given")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return line.decode("utf-8", errors="replace").rstrip("\r")

    async def _chunk(self) -> bytes:
        loop = asyncio.get_running_loop()
        fd = self.fd
        ready: asyncio.Future[bytes] = loop.create_future()

        def readable() -> None:
            if ready.done():
                return
            try:
                ready.set_result(os.read(fd, 4096))
            except OSError as exc:
                ready.set_exception(exc)

        try:
            loop.add_reader(fd, readable)
        except (NotImplementedError, ValueError, OSError):
            return await asyncio.to_thread(os.read, fd, 4096)  # no reader on this loop
        try:
            return await ready
        finally:
            loop.remove_reader(fd)

    @contextlib.contextmanager
    def _no_echo(self, *, enabled: bool) -> Iterator[None]:
        saved: Any = None
        if enabled:
            with contextlib.suppress(ImportError, OSError, ValueError):
                import termios

                if os.isatty(self.fd):
                    saved = termios.tcgetattr(self.fd)
                    quiet = termios.tcgetattr(self.fd)
                    quiet[3] &= ~termios.ECHO
                    termios.tcsetattr(self.fd, termios.TCSADRAIN, quiet)
        try:
            yield
        finally:
            if saved is not None:
                import termios

                termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)

    def __repr__(self) -> str:
        return "LineReader()"
