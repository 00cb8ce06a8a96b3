"""Resume: an atlas run killed with SIGKILL midway (in mining, or between visualisation
batches) and rerun writes byte-identical files to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from atlas_data import TINY, data_files

import onnxlens

# The children import onnxlens from where this process did (the installed wheel in CI, the
# source tree with its built _core in development): never the bare source tree, which has no
# compiled extension in a fresh clone.
_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        [str(Path(onnxlens.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    ),
}

SCRIPT = """
import sys
from onnxlens.atlas import build_atlas
sys.path.insert(0, {tests!r})
from atlas_data import TINY
build_atlas({model!r}, {data!r}, {out!r}, **TINY)
"""

#: Where to kill: a file that appears midway through that step (a finished mining shard, a
#: finished visualisation batch), with work still left after it.
KILL_AT = {
    "mining": "mining/state/shard-000001.npz",
    "visualisation": "data/vis/c2/batch-0001.json",
}


@pytest.mark.parametrize("step", sorted(KILL_AT))
def test_sigkill_then_rerun_gives_identical_files(tiny_atlas, tmp_path: Path, step: str) -> None:
    from onnxlens.atlas import build_atlas

    model, data, reference = tiny_atlas
    out = tmp_path / "site"
    code = SCRIPT.format(
        tests=str(Path(__file__).parent), model=str(model), data=str(data), out=str(out)
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    marker = out / KILL_AT[step]
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended (rc {proc.returncode}) before {marker.name}: {proc.stderr.read().decode()[-2000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{marker} did not appear within 120 s")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "index.html").exists(), "killed after the end: nothing was resumed"
    before = marker.stat().st_mtime_ns
    build_atlas(model, data, out, **TINY)
    assert marker.stat().st_mtime_ns == before, "the rerun redid work that was finished"
    got, want = data_files(out), data_files(reference.out)
    assert sorted(got) == sorted(want)
    differ = [name for name in want if got[name] != want[name]]
    assert not differ, f"{len(differ)} files differ after resuming, e.g. {differ[:5]}"


def test_ctrl_c_keeps_what_is_done_and_says_how_to_resume(tiny_atlas, tmp_path: Path) -> None:
    model, data, reference = tiny_atlas
    out = tmp_path / "site"
    argv = [sys.executable, "-m", "onnxlens", "atlas", str(model), str(data), "--out", str(out),
            "--layers", *TINY["layers"], "--channels", str(TINY["channels"]),
            "--steps", str(TINY["steps"]), "--vis-batch", "1", "--shard-size", "6", "--top-k", "5",
            "--stats-images", "64", "--no-embedding", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(argv, env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = out / "data" / "vis" / "p1" / "batch-0001.json"
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert time.monotonic() < deadline, "no visualisation batch within 120 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert "interrupted; the finished steps are kept" in err.decode()
    assert "Traceback" not in err.decode()
    assert marker.exists() and not (out / "index.html").exists()
    # what was kept is what an uninterrupted run writes
    want = data_files(reference.out)
    for p in (out / "data" / "vis").rglob("*"):
        if p.is_file():
            assert p.read_bytes() == want[p.relative_to(out).as_posix()]
