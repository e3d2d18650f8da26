"""Route tables from files: TOML and JSON, checked names and placeholders, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qes_async import InvalidInputError, Routes
from qes_async._client.routes_file import MAX_ROUTES_FILE, read_flat_toml


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_from_toml_file_merges_overrides_with_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "routes.toml",
        '# moved\nget_signature_status = "/v1/qualifiedElectronicSignature/{id}/status"\n',
    )
    routes = Routes.from_file(path)
    assert routes.get_signature_status == "/v1/qualifiedElectronicSignature/{id}/status"
    assert routes.create_workflow == Routes().create_workflow
    assert routes.overrides() == {
        "get_signature_status": "/v1/qualifiedElectronicSignature/{id}/status"
    }


def test_from_json_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "r.json", json.dumps({"confirm_signature": "/v2/s/{id}/confirm"}))
    assert Routes.from_file(path).confirm_signature == "/v2/s/{id}/confirm"


@pytest.mark.parametrize("kind", ["toml", "json"])
def test_printed_table_reads_back_as_the_same_routes(tmp_path: Path, kind: str) -> None:
    routes = Routes().replace(upload_selfie="/x/{id}/selfie")
    path = _write(tmp_path, f"routes.{kind}", routes.to_text(kind))
    assert Routes.from_file(path) == routes


def test_flat_reader_without_tomllib_reads_what_we_print() -> None:
    # Python 3.10 without tomli reads route files with this reader.
    assert read_flat_toml(Routes().to_text("toml")) == {
        name: getattr(Routes(), name) for name in Routes.operations()
    }
    assert read_flat_toml('a = \'x#y\' # c\nb = "q\\"#"\n') == {"a": "x#y", "b": 'q"#'}


@pytest.mark.parametrize("text", ["[routes]\na = 'x'\n", "a = 1\n", "a = 'x'\na = 'y'\n"])
def test_flat_reader_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="line"):
        read_flat_toml(text)


def test_unknown_operation_is_refused_listing_the_valid_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "routes.toml", 'get_status = "/v1/s/{id}"\n')
    with pytest.raises(InvalidInputError) as info:
        Routes.from_file(path)
    text = str(info.value)
    assert "get_status" in text
    assert "routes.toml" in text
    for name in Routes.operations():
        assert name in text


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"get_signature_status": "/v1/status"}, "lacks {id}"),
        ({"create_workflow": "/v1/{id}/workflows"}, "has unknown {id}"),
        ({"download_signed_document": "/v1/s/{id}/d"}, "lacks {document_id}"),
        ({"get_signature_status": "/v1/s/{signature_id}"}, "lacks {id} and has unknown"),
        ({"get_signature_status": "v1/s/{id}"}, "starting with /"),
        ({"get_signature_status": "/v1/s/{id:.*}"}, "brace"),
        ({"get_signature_status": "/v1/s/{id"}, "brace"),
        ({"get_signature_status": 3}, "starting with /"),
    ],
)
def test_wrong_placeholders_are_refused_naming_the_valid_ones(
    overrides: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        Routes.coerce(overrides)
    assert fragment in str(info.value)
    assert "must start with / and hold" in str(info.value)


def test_replace_checks_placeholders_too() -> None:
    with pytest.raises(InvalidInputError, match="lacks"):
        Routes().replace(get_signature_status="/v1/status")


def test_file_problems_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="neither"):
        Routes.from_file(_write(tmp_path, "routes.yaml", "a: b"))
    with pytest.raises(InvalidInputError, match="cannot read"):
        Routes.from_file(tmp_path / "missing.toml")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        Routes.from_file(_write(tmp_path, "bad.json", "{"))
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        Routes.from_file(_write(tmp_path, "bad.toml", "a = "))
    with pytest.raises(InvalidInputError, match="one table"):
        Routes.from_file(_write(tmp_path, "list.json", "[]"))
    with pytest.raises(InvalidInputError, match="over"):
        Routes.from_file(_write(tmp_path, "big.json", " " * (MAX_ROUTES_FILE + 1)))
