"""The sandbox's signing keys are made once, even when the first downloads race on threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("cryptography")

# Runs in a fresh process: the CA is made once per process, so only a first use can race.
RACE = textwrap.dedent(
    """
    import threading
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from qes_async.sandbox import _signing

    identity = _signing.SignerIdentity("Ada", "Lovelace", "NL1234567")
    barrier = threading.Barrier(16)
    seen = []

    def first_download():
        barrier.wait()
        ca = _signing.sandbox_ca()
        leaf = x509.load_der_x509_certificate(_signing._leaf_certificate(identity))
        seen.append((id(ca), leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)))

    threads = [threading.Thread(target=first_download) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    key = _signing.sandbox_ca()._leaf_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    print(len({ca for ca, _ in seen}), sum(1 for _, pub in seen if pub != key))
    """
)


@pytest.mark.parametrize("run", range(3))
def test_racing_first_downloads_share_one_ca_and_one_leaf_key(run: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", RACE], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out == ["1", "0"], f"CAs made: {out[0]}, certificates not for the leaf key: {out[1]}"
