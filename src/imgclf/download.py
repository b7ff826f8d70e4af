"""The download stage: stream an http(s):// or file: URL to disk with a progress bar, verify
size and MD5, and rename into place only when both match."""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from imgclf.errors import PipelineError
from imgclf.io_utils import atomic_path

CHUNK = 1 << 20


def local_path(url: str) -> Path:
    """Path named by a ``file:`` URL; ``file:relative/path`` is taken relative to the working directory."""
    parsed = urllib.parse.urlparse(url)
    path = urllib.request.url2pathname(parsed.netloc + parsed.path) if parsed.netloc else urllib.parse.unquote(parsed.path)
    return Path(path)


def _open(url: str, timeout: float) -> tuple[BinaryIO, int | None]:
    scheme = urllib.parse.urlparse(url).scheme
    if scheme == "file":
        path = local_path(url)
        try:
            handle = open(path, "rb")
        except OSError as exc:
            raise PipelineError(f"{url}: cannot open ({exc.strerror})") from None
        return handle, os.fstat(handle.fileno()).st_size
    if scheme in ("http", "https"):
        try:
            response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (scheme checked)
        except urllib.error.HTTPError as exc:
            raise PipelineError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PipelineError(f"{url}: cannot connect ({getattr(exc, 'reason', exc)})") from None
        length = response.headers.get("Content-Length")
        return response, int(length) if length and length.isdigit() else None
    raise PipelineError(f"{url}: unsupported URL scheme {scheme!r} (use http, https or file)")


def download(url: str, dest: str | Path, md5: str, size: int, progress: bool = True, timeout: float = 60) -> str:
    """Fetch ``url`` to ``dest``; return the MD5. On any failure ``dest`` is left untouched."""
    dest = Path(dest)
    digest = hashlib.md5()
    received = 0
    stream, announced = _open(url, timeout)
    with stream, atomic_path(dest) as tmp, open(tmp, "wb") as out:
        bar = tqdm(
            total=announced or size, unit="B", unit_scale=True, desc=dest.name, disable=not progress,
            file=sys.stderr, mininterval=1.0,
        )
        with bar:
            while True:
                try:
                    chunk = stream.read(CHUNK)
                except OSError as exc:
                    raise PipelineError(f"{url}: connection broken after {received} bytes ({exc})") from None
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        out.flush()
        if received != size:
            raise PipelineError(f"{url}: got {received:,} bytes, expected {size:,} (truncated or wrong file)")
        if digest.hexdigest() != md5:
            raise PipelineError(f"{url}: MD5 mismatch: got {digest.hexdigest()}, expected {md5}")
    return digest.hexdigest()


def md5sum(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
