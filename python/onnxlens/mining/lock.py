"""The lock on a mining output folder: one run writes DIR at a time.

`DIR/state/run.lock` is held with `fcntl.flock` for the whole run and names its holder (PID,
host, start time, command line). The kernel drops a flock when its process dies, however it
dies, so a lock file left by a killed run is stale by construction and the next run takes it
over. Where flock is unavailable (some network file systems, or no fcntl), the recorded PID is
the test instead: a lock naming a process that no longer exists on this host is stale.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ..errors import ConfigurationError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("onnxlens")

__all__ = ["RunLock"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


class RunLock:
    """`with RunLock(out):` holds `out/state/run.lock`, or raises ConfigurationError naming the
    run that holds it."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = self.out / "state" / "run.lock"
        self._file: IO[str] | None = None

    def _holder(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _refuse(self, holder: dict[str, Any]) -> ConfigurationError:
        who = (
            f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started', '?')}"
            if holder
            else "another process"
        )
        return ConfigurationError(
            f"{str(self.out)!r} is being written by another mining run ({who}; lock file "
            f"{str(self.path)!r}). Wait for it to finish, or pass another --out DIR; two runs "
            "in one folder would mix their results."
        )

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise self._refuse(self._holder()) from None
                    if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    self._check_pid()  # no flock on this file system: trust the PID
            else:  # pragma: no cover - Windows
                self._check_pid()
            old = self._holder()
            if old and old.get("pid") != os.getpid():
                log.info(
                    "onnxlens: taking over the stale lock of pid %s on %s (that run ended).",
                    old.get("pid"),
                    old.get("host"),
                )
            f.seek(0)
            f.truncate()
            f.write(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                        "argv": sys.argv,
                    }
                )
            )
            f.flush()
        except BaseException:
            f.close()
            raise
        self._file = f
        return self

    def _check_pid(self) -> None:
        old = self._holder()
        pid, host = old.get("pid"), old.get("host")
        if not isinstance(pid, int) or pid == os.getpid():
            return
        if host != socket.gethostname() or _alive(pid):
            raise self._refuse(old)

    def release(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            # Emptied, not deleted: deleting a flocked file lets a third run lock a new inode
            # while a second one still waits on the old.
            f.seek(0)
            f.truncate()
            f.flush()
        finally:
            f.close()  # closing drops the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
