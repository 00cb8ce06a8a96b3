"""One mining run per output folder (two real processes), stale locks taken over, and damaged
shard files recomputed instead of ending the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from onnxlens.errors import ConfigurationError
from onnxlens.mining import load, mine

ROOT = Path(__file__).resolve().parents[2]

# Holds the lock of argv[1] until killed, as a long mining run would.
_HOLDER = """
import sys, time
from pathlib import Path
from onnxlens.mining.lock import RunLock
lock = RunLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onnxlens", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def _hold(out: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def test_second_run_on_the_same_folder_refuses_then_runs_once_the_first_dies(
    tiny_model_path: Path, photo_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mined"
    args = ("mine", str(tiny_model_path), str(photo_dir), "--layers", "r1", "r2", "--quiet")
    holder = _hold(out)
    try:
        r = _cli(*args, "--out", str(out), "--restart")
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert f"pid {holder.pid}" in r.stderr and "another --out" in r.stderr
        # It refused before writing anything: no config, no shards, no result.
        assert sorted(p.name for p in (out / "state").iterdir()) == ["run.lock"]
        assert not (out / "result.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without releasing: its lock file still names it, and is stale.
    assert json.loads((out / "state" / "run.lock").read_text())["pid"] == holder.pid
    r = _cli(*args, "--out", str(out), "--top-k", "3")
    assert r.returncode == 0, r.stderr
    res = load(out)
    assert res.meta["top_k"] == 3 and set(res) == {"r1", "r2"}
    assert (out / "state" / "run.lock").read_text() == ""  # released at the end


def test_a_second_cli_run_refuses_while_the_first_is_mining(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    """Two real `onnxlens mine` processes on one folder. The first is paused (SIGSTOP) as soon
    as it holds the lock, i.e. mid-run; the second, with other layers and --restart, must
    refuse (exit 2) and leave the folder alone; the first then finishes with only its own
    layers in the result. (Before the lock: both exit 0 and the folder mixes their data.)"""
    import cv2

    data = tmp_path / "many"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1500):
        _, png = cv2.imencode(".png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        (data / f"{i:05d}.png").write_bytes(png.tobytes())
    out = tmp_path / "mined"
    lock = out / "state" / "run.lock"
    base = [sys.executable, "-m", "onnxlens", "mine", str(tiny_model_path), str(data), "--quiet"]
    a = subprocess.Popen(
        [*base, "--layers", "r1", "--out", str(out), "--shard-size", "32"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        while a.poll() is None and time.monotonic() < deadline:
            try:
                if json.loads(lock.read_text() or "{}").get("pid") == a.pid:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.001)
        a.send_signal(signal.SIGSTOP)
        assert a.poll() is None, "the first run ended before it could be paused"
        shards_before = sorted(p.name for p in (out / "state").glob("shard-*.npz"))
        r = _cli(*base[3:], "--layers", "r2", "--out", str(out), "--restart")
        assert r.returncode == 2, r.stderr
        assert "being written by another mining run" in r.stderr and f"pid {a.pid}" in r.stderr
        assert "Traceback" not in r.stderr
        assert sorted(p.name for p in (out / "state").glob("shard-*.npz")) == shards_before
    finally:
        a.send_signal(signal.SIGCONT)
    err = a.communicate(timeout=300)[1]
    assert a.returncode == 0, err
    res = load(out)
    assert [la["name"] for la in res.meta["layers"]] == ["r1"]
    assert res.meta["images_mined"] == 1500


def test_lock_in_process_refuses_and_releases(tmp_path: Path) -> None:
    from onnxlens.mining.lock import RunLock

    with RunLock(tmp_path):
        with pytest.raises(ConfigurationError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released: free again
        pass


def test_stale_lock_without_flock_is_judged_by_its_pid(tmp_path: Path, monkeypatch) -> None:
    """Where flock is unavailable, a lock naming a dead process on this host is taken over and
    one naming a live process refuses."""
    import socket

    import onnxlens.mining.lock as L
    from onnxlens.mining.lock import RunLock

    monkeypatch.setattr(L, "fcntl", None)
    (tmp_path / "state").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    lock = tmp_path / "state" / "run.lock"
    lock.write_text(json.dumps({"pid": int(dead), "host": socket.gethostname()}))
    with RunLock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": live.pid, "host": socket.gethostname()}))
        with pytest.raises(ConfigurationError, match=f"pid {live.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong-keys"])
def test_damaged_shard_is_recomputed(
    tiny_model_path: Path, photo_dir: Path, tmp_path: Path, damage: str
) -> None:
    kw = dict(top_k=4, shard_size=8, galleries=False, progress=False)
    ref = mine(tiny_model_path, photo_dir, ["r1", "r2"], tmp_path / "ref", **kw)
    out = tmp_path / "run"
    mine(tiny_model_path, photo_dir, ["r1", "r2"], out, **kw)
    shard = out / "state" / "shard-000002.npz"
    data = shard.read_bytes()
    if damage == "truncated":
        shard.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        shard.write_bytes(bytes(range(256)) * 8)
    elif damage == "empty":
        shard.write_bytes(b"")
    else:
        np.savez(tmp_path / "other.npz", other=np.zeros(3))
        shard.write_bytes((tmp_path / "other.npz").read_bytes())
    (out / "result.json").unlink()
    res = mine(tiny_model_path, photo_dir, ["r1", "r2"], out, **kw)
    for layer in ("r1", "r2"):
        for f in ("values", "ids", "positions", "boxes", "counts"):
            np.testing.assert_array_equal(res[layer][f], ref[layer][f])
    with np.load(shard) as z:  # rewritten whole
        assert {"layer0", "layer1", "skipped"} <= set(z.files)
