"""``--profile``: a cProfile of a benchmark's own process, its time grouped by package.

Each function's own time (``tottime``) is charged to where its code lives: a
``qes_async`` subpackage (``qes_async._flow``, ``qes_async.sandbox``...), a third-party
package (``aiohttp``, ``cattrs``, ``pyhanko``...), a standard-library module (``asyncio``,
``json``...), or ``built-ins`` (C functions: socket calls, ``select``, hashing...). Only
the main thread is profiled, so the figure is the event loop's; child processes (the
sandbox apart, the stand-in server) are not in it.
"""

from __future__ import annotations

import cProfile
import pstats
import sysconfig
from collections import defaultdict
from pathlib import Path

_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())


def package_of(filename: str, function: str) -> str:
    """The group a profiled function belongs to."""
    if filename == "~" or filename.startswith("<"):
        return "built-ins" if "method" in function or "built-in" in function else filename
    parts = Path(filename).parts
    if "qes_async" in parts:
        i = len(parts) - 1 - parts[::-1].index("qes_async")
        rest = parts[i + 1 :]
        return "qes_async." + rest[0].removesuffix(".py") if len(rest) > 1 else "qes_async"
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    if "benchmarks" in parts:
        return "benchmarks"
    if str(Path(filename).resolve()).startswith(_STDLIB):
        rel = Path(filename).resolve().relative_to(_STDLIB).parts
        return rel[0].removesuffix(".py")
    return "other"


def grouped(profile: cProfile.Profile, top: int = 18) -> str:
    """The profile's own time per package, largest first, with shares of the total."""
    stats = pstats.Stats(profile)
    totals: dict[str, float] = defaultdict(float)
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        totals[package_of(filename, function)] += tottime
    whole = sum(totals.values()) or 1.0
    lines = [f"{'package':<28} {'own s':>8} {'share':>7}"]
    for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{name:<28} {seconds:8.2f} {seconds / whole:7.1%}")
    lines.append(f"{'(all)':<28} {whole:8.2f}")
    return "\n".join(lines)
