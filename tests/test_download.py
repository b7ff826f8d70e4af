import hashlib

import pytest

from imgclf import download
from imgclf.errors import PipelineError

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB: more than one read chunk


@pytest.fixture
def served(http_server):
    directory, base = http_server
    (directory / "archive.bin").write_bytes(PAYLOAD)
    return f"{base}/archive.bin"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_http_download_verifies_and_writes(served, tmp_path):
    dest = tmp_path / "out" / "archive.bin"
    assert download.download(served, dest, md5(PAYLOAD), len(PAYLOAD), progress=False) == md5(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD
    assert [p.name for p in dest.parent.iterdir()] == ["archive.bin"]  # no temporary file left


def test_wrong_checksum_leaves_nothing(served, tmp_path):
    dest = tmp_path / "archive.bin"
    with pytest.raises(PipelineError, match="MD5 mismatch: got .* expected 0{32}"):
        download.download(served, dest, "0" * 32, len(PAYLOAD), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_reported_as_truncation(served, tmp_path):
    with pytest.raises(PipelineError, match="expected 2,000,000 .truncated"):
        download.download(served, tmp_path / "a", md5(PAYLOAD), 2_000_000, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_survives_a_failed_download(served, tmp_path):
    dest = tmp_path / "archive.bin"
    dest.write_bytes(b"previous good copy")
    with pytest.raises(PipelineError):
        download.download(served, dest, "0" * 32, len(PAYLOAD), progress=False)
    assert dest.read_bytes() == b"previous good copy"


def test_http_404_is_one_clear_error(http_server, tmp_path):
    _, base = http_server
    with pytest.raises(PipelineError, match="HTTP 404"):
        download.download(f"{base}/missing.zip", tmp_path / "x", "0" * 32, 1, progress=False)


def test_file_urls_absolute_and_relative(tmp_path, monkeypatch):
    source = tmp_path / "src.bin"
    source.write_bytes(PAYLOAD)
    download.download(source.as_uri(), tmp_path / "a.bin", md5(PAYLOAD), len(PAYLOAD), progress=False)
    monkeypatch.chdir(tmp_path)
    download.download("file:src.bin", tmp_path / "b.bin", md5(PAYLOAD), len(PAYLOAD), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes() == PAYLOAD


def test_unsupported_scheme(tmp_path):
    with pytest.raises(PipelineError, match="unsupported URL scheme 'ftp'"):
        download.download("ftp://example.org/x", tmp_path / "x", "0" * 32, 1, progress=False)
