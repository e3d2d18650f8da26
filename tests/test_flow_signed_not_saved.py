"""A local write that fails after the client has signed says the signature is done and
gives the exact command that fetches the documents; resuming then fetches them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flow_helpers import world

from qes_async import Document, MemoryFlowStore, SignatureFlow, SignedNotSavedError, make_pdf


async def test_a_folder_lost_after_signing_names_the_resume_command(tmp_path: Path) -> None:
    store = MemoryFlowStore()
    folder = tmp_path / "signed"
    async with world(tmp_path) as w:

        def break_the_folder(event: object) -> None:
            # Between the check at the start and the download: a full disk, an unmounted
            # share or a deleted folder, replaced here by a file in its way.
            if getattr(event, "status", None) == "signed" and folder.is_dir():
                shutil.rmtree(folder)
                folder.write_bytes(b"in the way")

        flow = w.flow(store=store, download_dir=folder, on_event=break_the_folder)
        with pytest.raises(SignedNotSavedError) as caught:
            await flow.run()
        message = str(caught.value)
        assert "The signature is done" in message
        assert f"qes-async resume {flow.flow_id} --output {folder}" in message
        folder.unlink()
        again = await SignatureFlow.resume(
            flow.flow_id,
            documents=[Document.from_bytes("loan.pdf", make_pdf("Loan"))],
            **w.resume_kw(store),
        )
        result = await again.run()
        created = w.created()
    assert result.outcome.value == "signed"
    assert Path(result.documents[0].path).is_file()
    assert created == 1  # nothing was signed twice
