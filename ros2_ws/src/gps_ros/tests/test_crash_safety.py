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


def test_a_step_whose_trials_blow_up_is_rejected(caplog):
    """LQR-FLM: when most trials of a condition's *new* controller are discarded (here: a sampler
    that blows up every controller after the first), the condition goes back to its previous
    controller, its step is cut tenfold, it samples that controller again (new seeds), and the
    metrics count the discarded trials and flag the rejected step; the run goes on."""
    import logging

    from test_traj_opt import ToyCost, ToyFitter, ToySampler, init_controller

    from gps_ros.algorithm import LQRFLM
    from gps_ros.config import AlgorithmConfig

    first = None                                             # the run's copy of the initial controller

    class Blowing(ToySampler):
        def sample(self, policy, condition, noise=None, seeds=None, source="controller"):
            tr = super().sample(policy, condition, noise, seeds, source)
            if policy is not first and not hasattr(self, "done"):
                for meta in tr.meta:
                    meta.discarded, meta.reason = True, "joint speed 12 rad/s (simulation blown up)"
                self.done = True
            return tr

    cfg = AlgorithmConfig(samples_per_condition=4, kl_step=0.5)
    algo = LQRFLM(cfg, Blowing(), ToyFitter(), ToyCost(), [init_controller(var=0.5)], seed=0,
                  distance_fn=lambda X: np.abs(X[:, -1, 0]))
    first = algo.conditions[0].controller
    m1 = algo.run_iteration().metrics
    assert "rejected_step" not in m1 and algo.conditions[0].prev_controller is first
    mult = algo.conditions[0].step_mult
    with caplog.at_level(logging.WARNING):
        m2 = algo.run_iteration().metrics
    assert "rejecting its step" in caplog.text
    assert m2["rejected_step"] == [True] and m2["discarded"] == 4 and m2["trials"] == 12
    assert algo.conditions[0].prev_controller is first       # resampled the old one, stepped from it
    assert algo.conditions[0].step_mult <= max(cfg.min_step_mult, 0.1 * mult) * cfg.max_step_mult
    m3 = algo.run_iteration().metrics                        # and the run goes on
    assert "rejected_step" not in m3 and m3["discarded"] == 0
