"""The smallest complete use of qes_async: sign one PDF against the embedded sandbox.

Run it with ``python examples/script.py [OUTPUT_DIR]``; the signed PDF lands in
``OUTPUT_DIR`` (default ``./signed``). Against a real environment, replace the sandbox by
your credentials and the passcode callback by a prompt (or use the CLI's ``sign`` command).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from qes_async import (
    CallbackSigner,
    Document,
    FlowResult,
    PasscodeRequest,
    QESClient,
    SignatureFlow,
    make_pdf,
)
from qes_async.sandbox import SandboxServer, sandbox_ca


async def main(download_dir: str | Path = "signed") -> FlowResult:
    """Start the sandbox, sign one document, return the flow's result."""
    async with (
        SandboxServer() as sandbox,
        QESClient(sandbox.client_id, sandbox.client_secret, base_url=sandbox.url) as client,
    ):

        def passcode(request: PasscodeRequest) -> str:
            # A real signer types the code from the SMS; the sandbox lets us read its outbox.
            return sandbox.latest_passcode(request.signature_id)

        flow = SignatureFlow(
            client,
            documents=[Document.from_bytes("contract.pdf", make_pdf("Loan contract"))],
            mobile_number="+31612345678",
            client_reference="client-42",
            signer=CallbackSigner(consent=lambda request: True, passcode=passcode),
            download_dir=download_dir,
            # Check the PAdES signature; with a real service, pass its qualified CA roots.
            trust_roots=[sandbox_ca().certificate_pem],
            expected_signer_name="Jane Doe",  # the sandbox's default identity case
        )
        return await flow.run()


if __name__ == "__main__":
    result = asyncio.run(main(*sys.argv[1:2]))
    print(f"{result.outcome.value}: signature {result.signature_id}")
    for document in result.documents:
        print(f"  {document.path} (sha256 {document.sha256}, {document.validation})")
