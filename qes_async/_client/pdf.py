"""Make small, valid one-page PDFs (for the sandbox, the demo and tests).

Hand-written rather than a dependency: a PDF with correct cross-reference offsets is
forty lines, and it keeps ``import qes_async`` free of any PDF library.
"""

from __future__ import annotations

__all__ = ["make_pdf"]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(text: str = "Contract", *, padding: int = 0) -> bytes:
    """A valid one-page PDF showing ``text`` (ASCII), optionally padded to a larger size.

    Args:
        text: what the page says; every line of it is drawn.
        padding: extra bytes (a PDF comment stream) to reach a given size for tests.
    """
    lines = text.encode("latin-1", errors="replace").decode("latin-1").splitlines() or [""]
    ops = ["BT", "/F1 14 Tf", "72 760 Td", "18 TL"]
    ops += [f"({_escape(line)}) '" for line in lines]
    ops.append("ET")
    content = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    if padding > 0:
        filler = b"%" + b"0" * 79 + b"\n"
        blob = filler * (padding // len(filler) + 1)
        objects.append(b"<< /Length %d >>\nstream\n" % len(blob) + blob + b"\nendstream")
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
