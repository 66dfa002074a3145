"""The model-based learners through ``gps-ros train`` on the simulated Panda: a run killed at the
commit of iteration 3 resumes and ends as the uninterrupted run (metrics, TensorBoard scalars), and
a run directory of one learner refuses another's config."""
import json

import pytest

pytest.importorskip("torch")

from conftest import small_config_dict, train_killed_at_commit  # noqa: E402
from gps_ros import tb  # noqa: E402
from gps_ros.config import parse_config  # noqa: E402
from gps_ros.experiment import Experiment, ExperimentError, check_files  # noqa: E402
from gps_ros.train import _build, restore_experiment, resume, train  # noqa: E402


def _cfg(kind="mbpo"):
    d = small_config_dict()
    d["agent"]["T"] = 10
    d["algorithm"] = {"type": kind, "samples_per_condition": 1}
    d["model_based"] = {"members": 2, "elites": 1, "model_hidden": [16], "model_max_epochs": 3,
                        "hidden": [16], "batch_size": 16, "utd": 1.0, "rollout_batch": 20,
                        "rollout_every": 5, "rollout_length": [1, 2, 1, 2], "bptt_horizon": 2}
    return d


def _rows(run):
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["mbpo", "bptt"])
def test_killed_run_resumes_and_ends_as_the_uninterrupted_one(kind, tmp_path):
    ref = train(parse_config(_cfg(kind), "t"), tmp_path / "ref", iterations=3, progress=False)
    train_killed_at_commit(_cfg(kind), tmp_path / "run", 3)
    run = tmp_path / "run"
    assert Experiment.open(run).load_state()["iteration"] == 2
    resume(run, progress=False)
    rows = _rows(run)
    assert rows == _rows(ref)
    assert [r["trials"] for r in rows] == [2, 4, 6]            # 2 conditions x 1 trial
    assert all(len(r["eval_final_distance"]) == 2 for r in rows)
    if tb.available():
        scalars = lambda d: {k: v for k, v in tb.read_scalars(d / "tb").items()  # noqa: E731
                             if not k.startswith("time_s/")}
        assert scalars(run) == scalars(ref)
    assert check_files(run) == []


def test_a_run_refuses_another_learners_config(tmp_path):
    run = train(parse_config(_cfg("mbpo"), "t"), tmp_path / "run", iterations=1, progress=False)
    exp = Experiment.open(run)
    for kind in ("dyna", "lqr_flm"):
        cfg = parse_config(_cfg(kind) if kind != "lqr_flm" else small_config_dict(), "t")
        agent, algo = _build(cfg)
        try:
            with pytest.raises(ExperimentError, match="state.pkl"):
                restore_experiment(exp, algo, cfg)
        finally:
            agent.close()


def test_eval_and_export_of_a_model_based_run(tmp_path):
    """``gps-ros eval`` runs the deterministic SAC actor on held-out targets (the state holds the
    EE points relative to the target, so the policy is goal-conditioned); ``gps-ros export`` writes
    the actor that the samplers run, checked against the checkpoint."""
    import numpy as np

    from gps_ros.evaluate import evaluate, export_policy
    from gps_ros.policy.export import load_torchscript

    d = _cfg("mbpo")
    d["agent"]["target_region"] = {"low": [0.45, -0.15, 0.35], "high": [0.55, 0.15, 0.5]}
    run = train(parse_config(d, "t"), tmp_path / "run", iterations=1, progress=False)
    res = evaluate(run, 3, seed=100, out=run / "eval.json")
    assert len(res["final_distance"]) == 3 and not res["uses_image"]
    assert 0.0 <= res["success_rate"] <= 1.0 and np.all(np.isfinite(res["final_distance"]))
    with pytest.raises(ExperimentError, match="sees no images"):
        evaluate(run, 1, seed=100, video=tmp_path / "v.mp4")
    path, err = export_policy(run)
    assert err == 0.0 and load_torchscript(path)[1]["noise_input"]
