"""``python -m qes_async.sandbox``: serve the sandbox standalone."""

from __future__ import annotations

import sys

from ._standalone import main

if __name__ == "__main__":
    sys.exit(main())
