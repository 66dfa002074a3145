"""Learning offline from recordings (gps_ros.record.read_recording, gps_ros.offline, ``gps-ros
fit`` / ``train-policy``): the trials of an iteration written as ROS 2 messages (MCAP, what
rosbag2 reads) come back -- with the sampler's own states, or with states rebuilt from the joint
states by the robot model -- and the dynamics and the policy learned from them equal what the
training learned from the same trials."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from gps_ros.agents import SimAgent
from gps_ros.cli import main
from gps_ros.record import read_recording, write_trials_mcap
from gps_ros.train import build_algorithm, build_fitter


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from conftest import small_config_dict

    from gps_ros.config import parse_config

    cfg = parse_config(small_config_dict(), "test")
    agent = SimAgent(cfg.agent)
    try:
        algo = build_algorithm(cfg, agent)
        results = [algo.run_iteration(), algo.run_iteration()]
        task, lay = agent.task, agent.layout
        d = tmp_path_factory.mktemp("bag")
        paths = []
        for r in results:
            paths.append(d / f"trials_{r.iteration}.mcap")
            write_trials_mcap(paths[-1], r.samples, agent.sim.dt, joint_pos=lay.joint_pos,
                              joint_vel=lay.joint_vel, joint_names=list(task.joint_names))
        yield SimpleNamespace(cfg=cfg, task=task, res=results[0], path=paths[0],
                              res2=results[1], path2=paths[1])
    finally:
        agent.close()


def test_trials_come_back_with_the_states_the_simulator_had(recorded):
    task, res, path = recorded.task, recorded.res, recorded.path
    back = read_recording(path, task, states="joint_states").trials
    assert len(back) == len(res.samples)
    for a, b in zip(res.samples, back):
        assert (b.N, b.T, b.dX, b.dU) == (a.N, a.T, a.dX, a.dU)
        np.testing.assert_array_equal(b.U, a.U)
        # joints exactly; EE points by the robot model instead of PyBullet's kinematics
        np.testing.assert_array_equal(b.X[..., task.layout.joint_pos], a.X[..., task.layout.joint_pos])
        np.testing.assert_allclose(b.X, a.X, atol=1e-7)       # PyBullet: ~1.5e-8 m apart
        assert [m.seed for m in b.meta] == [m.seed for m in a.meta]
        assert [m.condition for m in b.meta] == [m.condition for m in a.meta]


def test_the_offline_fit_equals_the_online_one(recorded, tmp_path, capsys):
    cfg, task, res, path = recorded.cfg, recorded.task, recorded.res, recorded.path
    online = build_fitter(cfg, task).fit(res.samples)
    offline = build_fitter(cfg, task).fit(read_recording(path, task, states="joint_states").trials)
    # equal up to the two kinematics' 1.5e-8 m: the regression amplifies that to ~1e-5 of |Fm|
    # entry-wise, while the dynamics predict the same next states to 1e-6
    for m, (a, b) in enumerate(zip(online, offline)):
        assert np.linalg.norm(b.Fm - a.Fm) <= 1e-5 * np.linalg.norm(a.Fm)
        assert np.linalg.norm(b.dyn_covar - a.dyn_covar) <= 1e-4 * np.linalg.norm(a.dyn_covar)
        tr = res.samples[m]
        XU = np.concatenate([tr.X, tr.U], axis=-1)[:, :-1]              # (N, T-1, dX+dU)
        pa = np.einsum("tij,ntj->nti", a.Fm[:-1], XU) + a.fv[:-1]
        pb = np.einsum("tij,ntj->nti", b.Fm[:-1], XU) + b.fv[:-1]
        assert np.abs(pb - pa).max() < 1e-6
    # the command line writes the same dynamics
    import yaml

    from conftest import small_config_dict

    cfg_file = tmp_path / "task.yaml"
    cfg_file.write_text(yaml.safe_dump(small_config_dict()))
    out = tmp_path / "dyn.npz"
    assert main(["fit", "--bag", str(path), "--config", str(cfg_file), "--out", str(out),
                 "--states", "joint_states"]) == 0
    assert "condition 1: 3 trials of" in capsys.readouterr().out
    z = np.load(out)
    np.testing.assert_allclose(z["c00/Fm"], offline[0].Fm, rtol=1e-12)


def test_recordings_in_order_reproduce_the_trainings_dynamics(recorded):
    """The prior remembers earlier iterations: fitting the recordings in order gives each
    iteration the dynamics the training fitted (the first iteration's alone would not)."""
    cfg, task, r = recorded.cfg, recorded.task, recorded
    path1, res2, path2 = r.path, r.res2, r.path2
    fitter = build_fitter(cfg, task)
    fitter.fit(read_recording(path1, task, states="joint_states").trials)
    again = fitter.fit(read_recording(path2, task, states="joint_states").trials)
    fresh = build_fitter(cfg, task).fit(read_recording(path2, task, states="joint_states").trials)
    for a, b, c in zip(res2.dynamics, again, fresh):
        assert np.linalg.norm(b.Fm - a.Fm) <= 1e-4 * np.linalg.norm(a.Fm)
        assert np.linalg.norm(c.Fm - a.Fm) > 1e-3 * np.linalg.norm(a.Fm)    # memory matters


def test_a_file_without_the_trial_index_is_one_line(tmp_path, recorded, capsys):
    import yaml

    from conftest import small_config_dict

    bad = tmp_path / "other.mcap"
    bad.write_bytes(b"")
    cfg_file = tmp_path / "task.yaml"
    cfg_file.write_text(yaml.safe_dump(small_config_dict()))
    assert main(["fit", "--bag", str(bad), "--config", str(cfg_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gps-ros: error:") and "\n" not in err


# --- a training's own recordings (logging.mcap): trials, controllers, offline S-steps ----------------
@pytest.fixture(scope="module")
def vision_run(tmp_path_factory):
    """A CI-sized visuomotor MDGPS training (2 iterations) that records every iteration."""
    from conftest import small_vision_config_dict

    from gps_ros.config import parse_config
    from gps_ros.train import train

    d = small_vision_config_dict()
    d["iterations"] = 2
    d["logging"] = {"mcap": True}
    cfg = parse_config(d, "test")
    out = train(cfg, tmp_path_factory.mktemp("vision") / "run", progress=False)
    return SimpleNamespace(cfg=cfg, dict=d, run=out,
                           bags=[out / "iterations" / f"{i:04d}" / "trials.mcap" for i in (1, 2)])


def test_a_recorded_training_fits_exactly_the_dynamics_it_fitted(vision_run):
    """With the sampler's states recorded (gps_msgs/Trajectory), the offline fit of each iteration
    in order is the training's dynamics.npz, not just close to it."""
    from gps_ros.offline import fit_dynamics

    for i, bag in enumerate(vision_run.bags, start=1):
        dyn = fit_dynamics(vision_run.cfg, vision_run.bags[:i], progress=lambda s: None)
        with np.load(vision_run.run / "iterations" / f"{i:04d}" / "dynamics.npz") as z:
            for m, d in enumerate(dyn):
                np.testing.assert_allclose(d.Fm, z[f"c{m:02d}/Fm"], rtol=1e-10, atol=1e-12)
                np.testing.assert_allclose(d.dyn_covar, z[f"c{m:02d}/dyn_covar"], rtol=1e-10,
                                           atol=1e-12)


def test_offline_s_steps_from_the_recordings_give_the_training_s_network(vision_run, tmp_path,
                                                                       capsys):
    """gps-ros train-policy on a training's recordings (trials with camera frames, the new
    controllers of each iteration) repeats its S-steps: the same network, parameter for
    parameter, exported for deployment with the run's task."""
    import torch
    import yaml

    from gps_ros.evaluate import _load_policy
    from gps_ros.policy.export import load_torchscript

    cfg_file = tmp_path / "task.yaml"
    cfg_file.write_text(yaml.safe_dump(vision_run.dict))
    out = tmp_path / "offline"
    args = ["train-policy", "--config", str(cfg_file), "--out", str(out)]
    for bag in vision_run.bags:
        args += ["--bag", str(bag)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("S-step on 4 trials") == 2 and "policy.pt" in printed
    _, online = _load_policy(vision_run.run)
    module, _ = load_torchscript(out / "policy.pt")
    from gps_ros.sample import Trajectories

    online_trials = Trajectories.load(vision_run.run / "iterations" / "0002" / "trials_c00.npz")
    img, q = online._inputs(online_trials)
    with torch.no_grad():
        got = module(torch.as_tensor(img), torch.as_tensor(q, dtype=torch.float32)).double().numpy()
    want = online.trainer.predict(img, q)
    assert np.abs(want).max() > 1e-3
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # the offline trainer's parameters are the online ones
    from gps_ros.config import parse_config
    from gps_ros.offline import train_policy

    policy = train_policy(parse_config(vision_run.dict, "test"), vision_run.bags, tmp_path / "again",
                          progress=lambda s: None)
    for (name, a), b in zip(online.trainer.net.state_dict().items(),
                            policy.trainer.net.state_dict().values()):
        np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=name)
    assert yaml.safe_load((out / "config.yaml").read_text())["policy"]["hidden"] == [16]
    steps = json.loads((out / "offline_training.json").read_text())["s_steps"]
    assert [s["iteration"] for s in steps] == ["1", "2"]


def test_train_policy_refuses_a_recording_without_controllers(recorded, tmp_path, capsys):
    """The reach recordings of the first fixture carry no controllers: one line, exit 2."""
    import yaml

    from conftest import small_vision_config_dict

    cfg_file = tmp_path / "task.yaml"
    cfg_file.write_text(yaml.safe_dump(small_vision_config_dict(use_image=False)))
    assert main(["train-policy", "--bag", str(recorded.path), "--config", str(cfg_file),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no controllers" in err and "\n" not in err
