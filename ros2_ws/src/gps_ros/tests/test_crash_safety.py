"""Crash safety: kill -9 at any moment, resume, and end exactly where an uninterrupted run ends."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gps_ros.experiment import Experiment, check_files
from gps_ros.train import resume, train

BENCH = Path(__file__).resolve().parents[4] / "bench"


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def _rows(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.skipif(not (BENCH / "fault_injection.py").exists(), reason="bench/ not in this checkout")
def test_fault_injection_three_kills(tmp_path):
    """bench/fault_injection.py in small: 3 SIGKILLs of `gps-ros train` subprocesses at seeded
    random moments, resumed each time; every file loads after each kill, and the final metrics,
    controllers and TensorBoard scalars equal a clean run's."""
    sys.path.insert(0, str(BENCH))
    try:
        from fault_injection import run_harness
    finally:
        sys.path.pop(0)
    from conftest import small_config_dict

    cfg = small_config_dict(iterations=3)
    cfg["agent"] = dict(cfg["agent"], T=20)
    s = run_harness(kills=3, seed=1, config=cfg, work=tmp_path, verbose=False)
    assert s["failures"] == [] and s["ok"], s
    assert (s["survived"], s["tried"]) == (3, 3)
    assert s["metrics_identical"] and s["controllers_identical"]


def test_crash_inside_an_iteration_is_redone_identically(small_cfg, tmp_path, monkeypatch):
    """Iteration 3 writes its trials, controllers, metrics line, plots and scalars and dies just
    before its commit point; resume redoes it and the run equals an uninterrupted one."""
    small_cfg.agent.T = 20
    clean = train(small_cfg, tmp_path / "clean", iterations=3, progress=False)
    run = train(small_cfg, tmp_path / "run", iterations=2, progress=False)
    real = Experiment.save_state

    def die_on_3(self, state):
        if state["iteration"] == 3:
            raise KeyboardInterrupt("killed")
        real(self, state)

    monkeypatch.setattr(Experiment, "save_state", die_on_3)
    with pytest.raises(KeyboardInterrupt):
        resume(run, iterations=3, progress=False)
    monkeypatch.setattr(Experiment, "save_state", real)
    assert len(_rows(run)) == 3 and Experiment.open(run).load_state()["iteration"] == 2
    (run / "iterations" / "0003" / ".controllers.npz.x1y2z3.tmp").write_bytes(b"half")
    resume(run, iterations=3, progress=False)
    assert _strip(_rows(run)) == _strip(_rows(clean))
    with np.load(clean / "iterations/0003/controllers.npz") as a, \
            np.load(run / "iterations/0003/controllers.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files)
    assert check_files(run) == []          # the temp file of the interrupted write is gone


def test_check_files_finds_damage(small_cfg, tmp_path):
    """The integrity check the harness relies on does see truncated and stray files."""
    small_cfg.agent.T = 10
    run = train(small_cfg, tmp_path / "run", iterations=1, progress=False)
    assert check_files(run) == []
    npz = run / "iterations/0001/controllers.npz"
    npz.write_bytes(npz.read_bytes()[:200])
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text()[:-20])
    ev = next((run / "tb").glob("events.out.tfevents.*"))
    ev.write_bytes(ev.read_bytes()[:-3])
    png = run / "progress.png"
    png.write_bytes(png.read_bytes()[:500])
    (run / ".state.pkl.abc.tmp").write_bytes(b"")
    probs = check_files(run)
    for name in ("controllers.npz", "metrics.jsonl", "events.out.tfevents", "progress.png",
                 ".state.pkl.abc.tmp"):
        assert any(name in p for p in probs), (name, probs)
