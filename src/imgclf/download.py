"""The download stage: stream an http(s):// or file: URL to disk with a progress bar, resume a
dropped connection with HTTP Range, verify size and MD5, and rename into place only when both match."""

import http.client
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from imgclf.errors import PipelineError
from imgclf.io_utils import DISK_FULL, md5sum
from imgclf.paths import partial_download

CHUNK = 1 << 20


def _urlopen(request: urllib.request.Request, timeout: float, end: float):
    """``urlopen`` bounded as a whole by the monotonic time ``end``: its socket timeout bounds each
    read, not a server that sends its status line and headers a byte at a time. Past ``end`` the
    blocked call is left in a daemon thread (the stage stops) and TimeoutError is raised."""
    outcome: list = []

    def call() -> None:
        try:
            outcome.append(urllib.request.urlopen(request, timeout=timeout))  # noqa: S310 (scheme checked)
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    while worker.is_alive() and time.monotonic() < end:
        worker.join(end - time.monotonic())
    if not outcome:
        raise TimeoutError
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _open(url: str, timeout: float, end: float, start: int = 0) -> tuple[BinaryIO, int | None, int]:
    """The stream, its length, and the offset it starts at: ``start`` where the server honours a
    Range request for the rest of the file, else 0 (the whole file again). Connecting and reading
    the headers end by the monotonic time ``end`` (TimeoutError)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":  # file:relative/path is taken relative to the working directory
        path = urllib.parse.unquote(parsed.netloc + parsed.path)
        try:
            handle = open(path, "rb")
        except OSError as exc:
            raise PipelineError(f"{url}: cannot open ({exc.strerror})") from None
        handle.seek(start)
        return handle, os.fstat(handle.fileno()).st_size - start, start
    if parsed.scheme in ("http", "https"):
        request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
        try:
            response = _urlopen(request, timeout, end)
        except TimeoutError:
            raise
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:  # the range is past the end: the partial file is no good
                return _open(url, timeout, end, 0)
            raise PipelineError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PipelineError(f"{url}: cannot connect ({getattr(exc, 'reason', exc)})") from None
        length = response.headers.get("Content-Length")
        offset = 0
        if start and response.status == 206:
            offset = int(response.headers.get("Content-Range", "bytes 0-").split()[1].split("-")[0])
        return response, int(length) if length and length.isdigit() else None, offset
    raise PipelineError(f"{url}: unsupported URL scheme {parsed.scheme!r} (use http, https or file)")


def _cut_timeout(stream, seconds: float) -> None:
    """Bound the next read of an HTTP response by ``seconds``: the per-read timeout, or the time
    left before the deadline where that is shorter (``urlopen``'s timeout is fixed per socket)."""
    sock = getattr(getattr(getattr(stream, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.01))


def download(url: str, dest: str | Path, md5: str, size: int, progress: bool = True, timeout: float = 60,
             deadline: float = 7200, attempts: int = 5) -> str:
    """Fetch ``url`` to ``dest`` (never left partial); return the MD5. A dropped connection is resumed
    (from zero where the server ignores ranges) up to ``attempts`` times in this run and from the
    kept partial file in the next; past ``deadline`` seconds in all it stops."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = Path(partial_download(str(dest), md5))
    end = time.monotonic() + deadline

    def stop_past_deadline(received: int) -> None:
        if time.monotonic() >= end:
            raise PipelineError(f"{url}: not complete after the deadline of {deadline:g} s (data.download_deadline_s); "
                                f"{received:,} of {size:,} bytes kept in {part} to resume from") from None

    received = 0
    with tqdm(total=size, unit="B", unit_scale=True, desc=dest.name, disable=not progress, file=sys.stderr,
              mininterval=1.0) as bar:
        for attempt in range(1, attempts + 1):
            have = part.stat().st_size if part.exists() else 0
            have = have if have < size else 0  # as long as the whole file or longer, yet not renamed: not to be trusted
            stop_past_deadline(have)
            try:
                stream, announced, offset = _open(url, min(timeout, end - time.monotonic()), end, have)
            except TimeoutError:  # connecting and the headers took until the deadline
                stop_past_deadline(have)
                raise PipelineError(f"{url}: no response within {timeout:g} s") from None
            bar.reset(total=size)
            bar.update(offset)
            try:
                with stream, open(part, "r+b" if offset else "wb") as out:
                    out.seek(offset)
                    out.truncate()
                    received = offset
                    read = getattr(stream, "read1", stream.read)  # what has arrived: the deadline is checked often
                    while received <= size:
                        stop_past_deadline(received)
                        _cut_timeout(stream, min(timeout, end - time.monotonic()))
                        try:
                            chunk = read(CHUNK)
                        except TimeoutError:
                            stop_past_deadline(received)
                            raise PipelineError(f"{url}: no data for {timeout:g} s after {received:,} bytes; "
                                                f"rerun to resume") from None
                        except (OSError, http.client.HTTPException) as exc:
                            raise ConnectionError(f"{received:,} bytes ({exc})") from None
                        if not chunk:
                            break
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                    if announced is not None and received - offset < announced and received <= size:
                        raise ConnectionError(f"{received:,} bytes (the server closed it early)")
            except ConnectionError as exc:
                stop_past_deadline(received)
                if attempt == attempts:
                    raise PipelineError(f"{url}: connection broken after {exc}; rerun to resume") from None
                continue  # ask for the rest (or, where the server ignores ranges, for all of it again)
            except OSError as exc:
                if exc.errno not in DISK_FULL:
                    raise
                part.unlink(missing_ok=True)  # a partial file must not keep the disk full
                raise PipelineError(f"{dest}: no space left on device (the partial download, "
                                    f"{received:,} of {size:,} bytes, was removed)") from None
            break
    if received != size:
        part.unlink(missing_ok=True)
        raise PipelineError(f"{url}: got {received:,} bytes, expected {size:,} (truncated or wrong file)")
    digest = md5sum(part)
    if digest != md5:
        part.unlink(missing_ok=True)
        raise PipelineError(f"{url}: MD5 mismatch: got {digest}, expected {md5}")
    os.replace(part, dest)
    return digest
