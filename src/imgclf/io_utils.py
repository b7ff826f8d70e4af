"""Atomic file output: a stage either leaves a complete file or none at all.

Temporaries are hidden siblings of the output named after it and the writing process
(``.<name>.<pid>.<random>``): a run removes those of its own output that a killed run left behind
(their process is gone or a zombie), and a full disk ends in one line naming the output, not a
traceback."""

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import time
import tempfile
from pathlib import Path
from typing import Iterator

from imgclf.errors import PipelineError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A killed process whose parent died with it stays a zombie
    where nothing reaps orphans (a container whose PID 1 is not an init): it writes nothing more,
    so it counts as gone (its state in /proc is Z)."""
    try:
        os.kill(pid, 0)
    except OSError as exc:  # ESRCH: no such process; EPERM: another user's process
        return isinstance(exc, PermissionError)
    if not Path("/proc/self/stat").exists():  # no Linux /proc (macOS, BSD): os.kill's answer stands
        return True
    try:
        state = proc_stat(pid)[0]
    except (FileNotFoundError, ProcessLookupError):  # gone meanwhile
        return False
    except OSError:  # not ours to read: os.kill's answer stands
        return True
    return state not in ("Z", "X")


def proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent pid, ...); OSError
    where the process has gone or /proc cannot say."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` whose writing process no longer exists; return them."""
    removed = []
    prefix = f".{path.name}."
    for sibling in path.parent.glob(f"{prefix}*"):
        pid = sibling.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)
            removed.append(sibling)
    return removed


def stale_partial_downloads(directory: Path, selected: set[Path], max_age_s: float, now: float | None = None) -> list[Path]:
    """The partial downloads (``.*.part``) in ``directory`` that no selected source resumes from
    (``selected``), or that are older than ``max_age_s``."""
    now = time.time() if now is None else now
    return sorted(part for part in Path(directory).glob(".*.part")
                  if part not in selected or now - part.stat().st_mtime > max_age_s)


@contextlib.contextmanager
def disk_full_names(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise PipelineError(f"{path}: no space left on device") from None
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    with disk_full_names(path):
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            os.chmod(tmp, 0o644)
            yield tmp
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def md5sum(path: str | os.PathLike) -> str:
    """A file's MD5 (hex): what a download is verified by and a checkpoint's fingerprint is made of."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2  # linux/fcntl.h, linux/fs.h
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _replace_dir(tmp: Path, path: Path) -> None:
    """Put the finished directory ``tmp`` in place of ``path``. The old ``path`` never disappears
    before the new one is there: the two are swapped in one step, then the old one is removed (it
    now carries the temporary's name, so a kill at that point leaves a stale temporary, never a
    half-deleted output)."""
    if not path.exists():
        os.replace(tmp, path)
        return
    if not _exchange(tmp, path):
        # no atomic swap on this file system: move the old one aside under our temporary name
        # first (a kill in between leaves the output missing, which both engines rebuild)
        old = tmp.with_name(tmp.name + ".old")
        os.replace(path, old)
        os.replace(tmp, path)
        tmp = old
    shutil.rmtree(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    with disk_full_names(path):
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent))
        try:
            yield tmp
            tmp.chmod(0o755)
            _replace_dir(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
