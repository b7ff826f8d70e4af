
import pytest

from pathlib import Path

from conftest import digest, write_params
from imgclf import download, io_utils, paths
from imgclf.errors import PipelineError

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB: more than one read chunk


@pytest.fixture
def served(http_server):
    directory, base = http_server
    (directory / "archive.bin").write_bytes(PAYLOAD)
    return f"{base}/archive.bin"




def test_http_download_verifies_and_writes(served, tmp_path):
    dest = tmp_path / "out" / "archive.bin"
    assert download.download(served, dest, digest(PAYLOAD), len(PAYLOAD), progress=False) == digest(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD
    assert [p.name for p in dest.parent.iterdir()] == ["archive.bin"]  # no temporary file left


def test_wrong_checksum_leaves_nothing(served, tmp_path):
    dest = tmp_path / "archive.bin"
    with pytest.raises(PipelineError, match="MD5 mismatch: got .* expected 0{32}"):
        download.download(served, dest, "0" * 32, len(PAYLOAD), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_reported_as_truncation(served, tmp_path):
    with pytest.raises(PipelineError, match="expected 2,000,000 .truncated"):
        download.download(served, tmp_path / "a", digest(PAYLOAD), 2_000_000, progress=False)
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
    download.download(source.as_uri(), tmp_path / "a.bin", digest(PAYLOAD), len(PAYLOAD), progress=False)
    monkeypatch.chdir(tmp_path)
    download.download("file:src.bin", tmp_path / "b.bin", digest(PAYLOAD), len(PAYLOAD), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes() == PAYLOAD


def test_unsupported_scheme(tmp_path):
    with pytest.raises(PipelineError, match="unsupported URL scheme 'ftp'"):
        download.download("ftp://example.org/x", tmp_path / "x", "0" * 32, 1, progress=False)


class _Flaky:
    """A real HTTP server on 127.0.0.1 whose first response stops halfway (the socket is closed
    after half the announced bytes); it honours Range requests unless ``ranges`` is False, and
    ``drip`` sends one byte per that many seconds instead, and ``hang`` sends the headers, then
    nothing for that many seconds."""

    def __init__(self, payload: bytes, ranges: bool = True, drops: int = 1, drip: float = 0.0, hang: float = 0.0):
        import http.server
        import threading

        flaky = self
        self.requests: list[str | None] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                asked = self.headers.get("Range")
                flaky.requests.append(asked)
                start = int(asked.split("=")[1].split("-")[0]) if asked and ranges else 0
                body = payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if hang:
                    self.wfile.flush()
                    time.sleep(hang)
                    return
                if drip:
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(drip)
                    return
                if len(flaky.requests) <= drops:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops halfway
                    return
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tiny-imagenet-200.zip"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


import time  # noqa: E402


@pytest.mark.parametrize("ranges", [True, False])
def test_a_dropped_connection_is_resumed(tmp_path, ranges):
    server = _Flaky(PAYLOAD, ranges=ranges)
    try:
        dest = tmp_path / "archive.zip"
        assert download.download(server.url, dest, digest(PAYLOAD), len(PAYLOAD), progress=False) == digest(PAYLOAD)
        assert dest.read_bytes() == PAYLOAD and sorted(p.name for p in tmp_path.iterdir()) == ["archive.zip"]
        assert server.requests[0] is None and server.requests[1] == f"bytes={len(PAYLOAD) // 2}-"
        assert len(server.requests) == 2  # resumed (or, where ranges are ignored, fetched again) once
    finally:
        server.close()


def test_the_next_run_resumes_from_the_kept_part(tmp_path):
    server = _Flaky(PAYLOAD, drops=1)
    try:
        dest = tmp_path / "archive.zip"
        with pytest.raises(PipelineError, match=r"connection broken after 512,000 bytes .*; rerun to resume$"):
            download.download(server.url, dest, digest(PAYLOAD), len(PAYLOAD), progress=False, attempts=1)
        assert not dest.exists() and Path(paths.partial_download(str(dest), digest(PAYLOAD))).stat().st_size == len(PAYLOAD) // 2
        download.download(server.url, dest, digest(PAYLOAD), len(PAYLOAD), progress=False, attempts=1)
        assert dest.read_bytes() == PAYLOAD and server.requests[1] == f"bytes={len(PAYLOAD) // 2}-"
        assert not Path(paths.partial_download(str(dest), digest(PAYLOAD))).exists()
    finally:
        server.close()


def test_a_killed_download_resumes_from_what_it_kept(tmp_path):
    """SIGKILL in the middle of a download: the next run asks for the rest (HTTP Range) and the
    file is whole."""
    import signal
    import subprocess
    import sys

    slow, fast = _Flaky(PAYLOAD, drip=0.001), _Flaky(PAYLOAD, drops=0)
    dest = tmp_path / "archive.zip"
    part = Path(paths.partial_download(str(dest), digest(PAYLOAD)))
    code = (f"from imgclf import download; download.download({slow.url!r}, {str(dest)!r}, {digest(PAYLOAD)!r}, "
            f"{len(PAYLOAD)}, progress=False)")
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size > 100) and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        kept = part.stat().st_size
        assert 100 < kept < len(PAYLOAD) and not dest.exists()
        download.download(fast.url, dest, digest(PAYLOAD), len(PAYLOAD), progress=False)
        assert dest.read_bytes() == PAYLOAD and fast.requests == [f"bytes={kept}-"] and not part.exists()
    finally:
        process.kill()
        slow.close()
        fast.close()


def test_a_stalling_server_meets_the_deadline(tmp_path):
    server = _Flaky(PAYLOAD, drip=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(PipelineError, match=r"not complete after the deadline of 1 s \(data.download_deadline_s\)"):
            download.download(server.url, tmp_path / "a.zip", digest(PAYLOAD), len(PAYLOAD), progress=False, deadline=1)
        assert time.monotonic() - started < 5
        assert not (tmp_path / "a.zip").exists() and 0 < Path(paths.partial_download(str(tmp_path / "a.zip"), digest(PAYLOAD))).stat().st_size < 20
    finally:
        server.close()


@pytest.mark.parametrize("stall", ["hang", "drip"])
def test_the_deadline_cuts_the_wait_for_the_next_read(tmp_path, stall):
    """A server that sends its headers and then nothing (or one byte per 4 s) is dropped at the
    deadline, not after the per-read timeout (60 s) or the next byte; what came is kept."""
    server = _Flaky(PAYLOAD, **({"hang": 30} if stall == "hang" else {"drip": 4}))
    try:
        started = time.monotonic()
        with pytest.raises(PipelineError, match=r"not complete after the deadline of 1 s \(data.download_deadline_s\); "
                                                 r"\d+ of 1,024,000 bytes kept in .*\.part to resume from$"):
            download.download(server.url, tmp_path / "a.zip", digest(PAYLOAD), len(PAYLOAD), progress=False, deadline=1)
        assert time.monotonic() - started < 2.5
        assert not (tmp_path / "a.zip").exists()
    finally:
        server.close()


def test_a_stall_after_the_headers_fails_after_one_timeout_not_five(tmp_path):
    """Without a deadline in reach, a server that stops sending fails the attempt after the
    per-read timeout, once: retries are for dropped connections, not for a silent server."""
    server = _Flaky(PAYLOAD, hang=30)
    try:
        started = time.monotonic()
        with pytest.raises(PipelineError, match=r"tiny-imagenet-200.zip: no data for 1 s after 0 bytes; rerun to resume$"):
            download.download(server.url, tmp_path / "a.zip", digest(PAYLOAD), len(PAYLOAD), progress=False, timeout=1)
        assert time.monotonic() - started < 2.5 and len(server.requests) == 1
    finally:
        server.close()


def test_a_full_disk_removes_the_partial_download(tmp_path, served, monkeypatch):
    """No space left while downloading: one line naming the output and how much had come; the
    partial file is removed, so the disk is not left full."""
    import builtins
    import errno

    class Full:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, chunk):
            if self.written + len(chunk) > 300_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(chunk)
            return self.handle.write(chunk)

    monkeypatch.setattr(download, "open", lambda *a, **k: Full(builtins.open(*a, **k)), raising=False)
    dest = tmp_path / "a.zip"
    with pytest.raises(PipelineError, match=rf"^{dest}: no space left on device \(the partial download, "
                                             r"\d[\d,]* of 1,024,000 bytes, was removed\)$"):
        download.download(served, dest, digest(PAYLOAD), len(PAYLOAD), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_tidy_removes_partial_downloads_of_other_sources_and_old_ones(tmp_path):
    """A partial download is kept for the source that resumes from it, and removed once no
    selected source does, or when it is older than a week."""
    import os

    dest = tmp_path / "imagenet200.zip"
    mine, other = Path(paths.partial_download(str(dest), "a" * 32)), Path(paths.partial_download(str(dest), "b" * 32))
    old = Path(paths.partial_download(str(tmp_path / "cifar10.tar.gz"), "c" * 32))
    for part in (mine, other, old):
        part.write_bytes(b"x")
    week = paths.PART_MAX_AGE_S
    os.utime(old, (time.time() - week - 60, time.time() - week - 60))
    assert io_utils.stale_partial_downloads(tmp_path, {mine, old}, week) == [old, other]
    assert io_utils.stale_partial_downloads(tmp_path, {mine, old}, week, now=time.time() + week + 3600) == [old, mine, other]


def test_a_server_that_never_answers_times_out(tmp_path):
    """A server that accepts the connection and never sends a byte: one line, no file."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/tiny-imagenet-200.zip"
        started = time.monotonic()
        with pytest.raises(PipelineError, match=r"127\.0\.0\.1:\d+/tiny-imagenet-200.zip: no response within 1 s$"):
            download.download(url, tmp_path / "a.zip", digest(PAYLOAD), len(PAYLOAD), progress=False, timeout=1)
        assert time.monotonic() - started < 10
        assert list(tmp_path.iterdir()) == []
    finally:
        silent.close()


def test_cli_downloads_a_path_source_and_refuses_a_folder(tmp_path, small_tiny_zip):
    """A source given by ``path`` (no URL) is copied and verified like a file: URL; a folder
    source has nothing to download, and says so in one line."""
    import subprocess

    import yaml

    from conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    sources = params["data"].setdefault("sources", {})
    sources["local"] = {"path": str(small_tiny_zip), "md5": download.md5sum(small_tiny_zip),
                                          "size": small_tiny_zip.stat().st_size, "layout": "tiny_imagenet_zip"}
    sources["tree"] = {"path": str(tmp_path), "layout": "folder"}
    params["data"]["imagenet200"]["source"] = "local"
    write_params(tmp_path / "params.yaml", params)
    command = ["imgclf", "download", "imagenet200", "--out", str(tmp_path / "raw.zip"), "--params",
               str(tmp_path / "params.yaml"), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "source local" in result.stdout and (tmp_path / "raw.zip").read_bytes() == small_tiny_zip.read_bytes()
    params["data"]["imagenet200"]["source"] = "tree"
    write_params(tmp_path / "params.yaml", params)
    result = subprocess.run([*command[:4], str(tmp_path / "again.zip"), *command[5:]], capture_output=True, text=True)
    assert result.returncode != 0 and not (tmp_path / "again.zip").exists()
    assert result.stderr.strip().splitlines()[-1] == "error: data.sources.tree: a folder source is read in place; nothing to download"


def test_the_deadline_covers_the_status_line_and_headers(tmp_path):
    """A server that sends its status line and headers one byte per 0.3 s never lets a read wait
    for the per-read timeout (2 s): the deadline (1 s) still ends the download, with nothing kept."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def dribble():
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1024000\r\nX-Padding: " + b"x" * 200:
                if stop.wait(0.3):
                    return
                connection.sendall(bytes([byte]))

    threading.Thread(target=dribble, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/tiny-imagenet-200.zip"
    try:
        started = time.monotonic()
        with pytest.raises(PipelineError, match=r"not complete after the deadline of 1 s \(data.download_deadline_s\); "
                                                 r"0 of 1,024,000 bytes kept"):
            download.download(url, tmp_path / "a.zip", digest(PAYLOAD), len(PAYLOAD), progress=False, timeout=2, deadline=1)
        assert time.monotonic() - started < 2
        assert not (tmp_path / "a.zip").exists()
    finally:
        stop.set()
        listener.close()
