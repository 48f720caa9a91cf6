"""Files written atomically: a temporary file beside the target, flushed to disk, renamed
over it, so a crash leaves the old file or the new one, never half of one (checkpoints,
ONNX files, plots, datasets, the decoded MNIST cache)."""
from __future__ import annotations

import glob
import os
import stat
import tempfile
from pathlib import Path


def write_atomically(target: Path, write, mode=None) -> None:
    """``write(file)`` into a temporary file renamed over ``target``: a crash leaves the old file or the new."""
    tmp = write_temporary(target, write, mode)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_temporary(target: Path, write, mode=None) -> Path:
    """``write(file)`` into a temporary file beside ``target``, flushed with ``mode`` (default:
    ``target``'s); returns its path, to rename over ``target``. Nothing is left on failure.
    A missing folder, or a folder at ``target``, is named as such (not the temporary file)."""
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {target}: the folder {target.parent} does not exist. Create it "
                                f"first, or give another path.")
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {target}: it is a folder. Give the path of a file, in it or "
                                f"beside it.")
    if target.exists() and not os.access(target, os.W_OK):  # as open(target, "wb") would refuse
        raise PermissionError(f"cannot write {target}: the file is read-only, and is left as it is. Make it "
                              f"writable (chmod u+w) to replace it, or give another path.")
    mode = mode_for(target) if mode is None else mode
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
    except PermissionError:
        raise PermissionError(f"cannot write {target}: no permission to create files in {target.parent}. "
                              f"Give a path in a folder you can write.") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def mode_for(target: Path) -> int:
    """The existing file's permission bits, or what the umask gives a new file."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def remove_stale_temporaries(target: Path) -> None:
    """Delete ``.<name>.<pid>.*.tmp`` files beside ``target`` whose writer is gone."""
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        pid = tmp.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue  # a save of this checkpoint is under way in another process
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not writing it now: we are about to
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
