"""A download folder that cannot take the signed PDFs is refused before anything is created:
the signature is legally done once the client types the SMS code, too late to find out."""

from __future__ import annotations

from pathlib import Path

import pytest
from flow_helpers import world

from qes_async import InvalidInputError


def _bad_folders(tmp: Path) -> dict[str, Path]:
    a_file = tmp / "a-file"
    a_file.write_bytes(b"x")
    return {"is_a_file": a_file, "below_a_file": a_file / "signed"}


@pytest.mark.parametrize("kind", ["is_a_file", "below_a_file"])
async def test_an_unusable_download_dir_is_refused_before_any_request(
    tmp_path: Path, kind: str
) -> None:
    folder = _bad_folders(tmp_path)[kind]
    async with world(tmp_path) as w:
        with pytest.raises(InvalidInputError, match="download_dir") as caught:
            await w.flow(download_dir=folder).run()
        reached = [r.route for r in w.sandbox.request_log]
    assert reached == []  # not even a token was asked for
    assert "writable folder" in str(caught.value.advice)


async def test_a_missing_download_dir_is_created(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "signed"
    async with world(tmp_path) as w:
        result = await w.flow(download_dir=folder).run()
    assert result.outcome.value == "signed"
    assert Path(result.documents[0].path).parent.parent == folder
