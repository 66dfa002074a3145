"""CI-sized MDGPS loop: C-step against the linearised global policy, S-step distillation, resume."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from gps_ros.agents import SimAgent  # noqa: E402
from gps_ros.algorithm import MDGPS  # noqa: E402
from gps_ros.config import parse_config  # noqa: E402
from gps_ros.train import build_algorithm, resume, train  # noqa: E402

from conftest import small_config_dict  # noqa: E402


def mdgps_cfg():
    d = small_config_dict()
    d["agent"]["conditions"] = d["agent"]["conditions"][:1]
    d["algorithm"]["type"] = "mdgps"
    # a blind policy (no camera in CI) can still learn one target from the joint state
    d["policy"] = {"use_image": False, "iterations": 150, "hidden": [32, 32], "on_policy": False}
    return parse_config(d, "test")


def test_mdgps_needs_a_policy_section():
    d = small_config_dict()
    d["algorithm"]["type"] = "mdgps"
    with pytest.raises(Exception, match="needs a policy section"):
        parse_config(d, "test")


def test_mdgps_iteration_distils_and_constrains_against_the_policy():
    cfg = mdgps_cfg()
    agent = SimAgent(cfg.agent)
    try:
        algo = build_algorithm(cfg, agent)
        assert isinstance(algo, MDGPS)
        r1 = algo.run_iteration()
        assert algo.policy.trained and np.isfinite(r1.metrics["distill_loss"])
        # after the S-step the network reproduces the new controller on the samples
        tr = r1.samples[0].valid()
        ctrl = algo.conditions[0].controller
        err = np.abs(algo.policy.predict(tr) - ctrl.mean_actions(tr.X))
        sd = np.sqrt(np.diagonal(ctrl.pol_covar, axis1=1, axis2=2))
        assert np.median(err / sd) < 1.0
        r2 = algo.run_iteration()
        ref = algo.conditions[0].prev_reference
        # the C-step of iteration 2 was taken against the policy linearisation, not the controller
        assert ref is not None and not np.allclose(ref.K, algo.conditions[0].prev_controller.K)
        for r in r2.lqr:
            assert np.isfinite(r.controller.K).all() and r.kl <= 1.1 * r.epsilon
    finally:
        agent.close()


def test_mdgps_resume_matches_uninterrupted(tmp_path):
    cfg = mdgps_cfg()
    a = train(cfg, tmp_path / "a", iterations=2, progress=False)
    b = train(cfg, tmp_path / "b", iterations=1, progress=False)
    resume(b, iterations=2, progress=False)
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k != "time"}
                       for l in (p / "metrics.jsonl").read_text().splitlines()]
    assert strip(a) == strip(b)
