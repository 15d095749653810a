"""Writing a file the pipeline produces: through a temporary file beside it, moved into place only
once complete, and removed on every failure path (an exception, Ctrl-C), so that neither a
half-written output nor a stray `*.tmp` is left behind.

A full disk says so, with the path and the bytes needed: torch's zip writer reports a failed write
as `unexpected pos 576 vs 534` (the `ENOSPC` survives only as the exception's context when torch
writes to a Python file object, which is why `save_torch` hands it one), numpy and pandas as a bare
`[Errno 28]`. No heavy imports at module level.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFullError(OSError):
    """No space left on the device (or quota, or file-size limit) while writing an output."""

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC


def _chain(err: BaseException | None, seen=None) -> Iterator[BaseException]:
    seen = seen if seen is not None else set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        if err.__cause__ is not None:
            yield from _chain(err.__cause__, seen)
        err = err.__context__


def _full_errno(err: BaseException) -> int | None:
    """The ENOSPC (EDQUOT, EFBIG) somewhere in the exception's chain, if any."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in _FULL:
            return e.errno
    return None


def human(nbytes: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() or not os.path.ismount(path):
        if path.parent == path:
            break
        path = path.parent
    return path


def disk_full_message(
    path: str | Path, needed: int | None, code: int = errno.ENOSPC, written: int = 0
) -> str:
    """`needed`: the bytes the file takes (an estimate), else more than the `written` ones."""
    path = Path(path)
    try:
        free = shutil.disk_usage(path.parent).free
        where = f"; {human(free)} free on {_mount_point(path.parent)}"
    except OSError:
        where = ""
    need = f" needs about {human(needed)}" if needed else f" needs more than {human(written)}"
    what = {
        errno.EDQUOT: "disk quota exceeded",
        errno.EFBIG: "file too large (a file-size limit: ulimit -f)",
    }.get(code, "no space left on device")
    return (
        f"{what}: writing {path}{need}{where}; the partial file was removed. Free space there "
        "(or move `scratch:` or the working directory to a larger disk), then rerun the command"
    )


@contextmanager
def atomic_output(path: str | Path, needed: int | None = None, suffix: str = ".tmp"):
    """Yield a temporary path beside `path`; on success move it to `path`, on any failure remove
    it. A full disk raises DiskFullError naming `path` and the `needed` bytes (an estimate)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        written = 0
        with suppress(OSError):
            written = tmp.stat().st_size
            tmp.unlink()
        code = _full_errno(err) if isinstance(err, Exception) else None
        if code is not None and not isinstance(err, DiskFullError):
            raise DiskFullError(disk_full_message(path, needed, code, written)) from err
        raise


def torch_nbytes(obj) -> int:
    """Bytes of the tensors in a (nested) state: what torch.save writes, less a little metadata."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(torch_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(torch_nbytes(v) for v in obj)
    return 0


def save_torch(obj, path: str | Path) -> None:
    """`torch.save` to `path` atomically (through a file object: see the module doc)."""
    import torch

    with atomic_output(path, torch_nbytes(obj)) as tmp, open(tmp, "wb") as out:
        torch.save(obj, out)


def write_text(path: str | Path, text: str) -> None:
    with atomic_output(path, len(text.encode())) as tmp:
        tmp.write_text(text)
