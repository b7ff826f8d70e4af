"""A folder source's tree, read safely: its regular files and nothing else (no link out of it, no
device, FIFO or socket, no name that is not UTF-8), and a digest of what it holds."""

import hashlib
import os
import stat
from pathlib import Path

from imgclf.errors import PipelineError

_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
          stat.S_IFSOCK: "a socket"}


# what a missing folder is, by its path: the one line says how to install it
MISSING_HINTS = {"/usr/share/datasets/fashion-mnist": "install Debian's package: apt-get install dataset-fashion-mnist"}


def missing(path: str | Path) -> str:
    """Why ``path`` is not there, where a hint says how to get it (else an empty string)."""
    hint = MISSING_HINTS.get(str(path).rstrip("/"))
    return f" ({hint})" if hint else ""


def shown(name: str) -> str:
    """A file name as it can be printed: bytes that are not UTF-8 escaped (``\\xff``)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def scan(root: str | Path) -> list[tuple[str, int, int]]:
    """Every regular file of the tree at ``root``: (path relative to it, size, mtime_ns), sorted.

    Links are followed while they stay inside the tree; a link that leaves it (or is broken), a
    device, FIFO or socket, or a name that is not UTF-8 stops the scan with one line naming it."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"{root}: image folder not found")
    top = os.path.realpath(root)
    found, visited = [], set()

    def refuse(relative: str, why: str) -> PipelineError:
        return PipelineError(f"{root}: {shown(relative)}: {why}")

    def walk(directory: str, prefix: str) -> None:
        if os.path.realpath(directory) in visited:  # a link back to a folder already read
            return
        visited.add(os.path.realpath(directory))
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as exc:
            raise refuse(prefix or ".", f"cannot list ({exc.strerror})") from None
        for entry in entries:
            relative = f"{prefix}{entry.name}"
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                raise refuse(relative, "file name is not valid UTF-8") from None
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if os.path.commonpath([top, target]) != top:
                    raise refuse(relative, f"link leaves the folder (to {shown(target)})")
            try:
                info = os.stat(entry.path)
            except OSError as exc:
                raise refuse(relative, f"cannot read ({exc.strerror})") from None
            if stat.S_ISDIR(info.st_mode):
                walk(entry.path, f"{relative}/")
            elif stat.S_ISREG(info.st_mode):
                found.append((relative, info.st_size, info.st_mtime_ns))
            else:
                raise refuse(relative, f"not a regular file ({_KINDS.get(stat.S_IFMT(info.st_mode), 'special')})")

    walk(str(root), "")
    return found


def content_digest(root: str | Path) -> str:
    """What the prepared data depend on in a folder of a few files (mnist_idx): a digest of its
    files' names and bytes, so a file rewritten with other bytes reruns prepare whatever its time."""
    digest = hashlib.sha256()
    for name, _, _ in scan(root):
        digest.update(f"{name}\0".encode())
        with open(Path(root, name), "rb") as handle:
            digest.update(hashlib.file_digest(handle, "md5").digest())
    return digest.hexdigest()


def listing_digest(root: str | Path) -> str:
    """What the prepared data depend on in a folder source: a digest of its files' names, sizes and
    modification times (``scan``), so an added, removed or rewritten file reruns prepare."""
    listing = "".join(f"{name}\0{size}\0{mtime}\n" for name, size, mtime in scan(root))
    return hashlib.sha256(listing.encode()).hexdigest()
