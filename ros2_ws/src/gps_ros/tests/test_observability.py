"""Observability: TensorBoard scalars per iteration, paths.png, MCAP trial recording."""
import json
from pathlib import Path

import numpy as np
import pytest

from gps_ros.cli import main
from gps_ros.config import parse_config
from gps_ros.sample import TrialMeta, Trajectories
from gps_ros.train import format_line, resume, train

from conftest import small_config_dict

tb = pytest.importorskip("gps_ros.tb")
if not tb.available():
    pytest.skip("tensorboardX is not installed", allow_module_level=True)


def _rows(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    """2 iterations of the CI config with MCAP recording on."""
    d = small_config_dict()
    d["logging"] = {"mcap": True}
    cfg = parse_config(d, "test")
    return train(cfg, tmp_path_factory.mktemp("obs") / "run", iterations=2, progress=False)


def test_tensorboard_scalars_match_the_metrics(run2):
    rows = _rows(run2)
    s = tb.read_scalars(run2 / "tb")
    for tag in ("cost/mean", "final_distance_cm/c00", "final_distance_cm/c01", "final_distance_cm/max",
                "kl/c00", "eta/c01", "step_mult/c00", "epsilon/c00", "trials", "time_s/sample",
                "time_s/lqr", "time_s/total"):
        assert [step for step, _ in s[tag]] == [1, 2], tag
    for r in rows:
        it = r["iteration"]
        at = {tag: dict(v)[it] for tag, v in s.items()}
        assert at["cost/mean"] == pytest.approx(r["cost"], rel=1e-6)
        assert at["final_distance_cm/c01"] == pytest.approx(100 * r["final_distance"][1], rel=1e-6)
        assert at["kl/c00"] == pytest.approx(r["kl"][0], rel=1e-6)
        assert at["eta/c01"] == pytest.approx(r["eta"][1], rel=1e-6)
        assert at["trials"] == r["trials"]
    # the log line of each iteration names what matters
    line = format_line(rows[-1], 2)
    assert "iter   2/2" in line and "final dist cm" in line and "lqr" in line


def test_resume_purges_scalars_of_a_redone_iteration(run2, tmp_path):
    """A process that wrote iteration 3's scalars and was killed before committing: after resume,
    TensorBoard (purge rule) sees iteration 3 once, with the redone values."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run2, run)
    w = tb.ScalarWriter(run / "tb", purge_step=None)
    w.add_scalars(3, {"cost/mean": -123.0, "kl/c00": -1.0})      # the stale, uncommitted write
    w.close()
    resume(run, iterations=3, progress=False)
    s = tb.read_scalars(run / "tb")
    assert [st for st, _ in s["cost/mean"]] == [1, 2, 3]
    assert dict(s["cost/mean"])[3] == pytest.approx(_rows(run)[-1]["cost"], rel=1e-6)
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 3


def test_paths_png_and_plan(run2):
    from gps_ros.experiment import check_files

    png = (run2 / "paths.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    with np.load(run2 / "iterations" / "0002" / "plan.npz") as z:
        mu = z["c00/mu"]
    trials = Trajectories.load(run2 / "iterations" / "0002" / "trials_c00.npz")
    assert mu.shape == (trials.T, trials.dX + trials.dU) and np.isfinite(mu).all()
    # the plan made at iteration 1 predicts iteration 2's trials: its EE origin path (state dims
    # 14..16, relative to the target) starts where the trials start and ends nearer the target
    with np.load(run2 / "iterations" / "0001" / "plan.npz") as z:
        plan1 = z["c00/mu"][:, 14:17]
    ee = trials.X[:, :, 14:17].mean(0)
    assert np.linalg.norm(plan1[0] - ee[0]) < 0.01
    assert np.linalg.norm(plan1[-1]) < np.linalg.norm(plan1[0])
    assert check_files(run2) == []


def test_logging_can_be_switched_off(tmp_path):
    d = small_config_dict()
    d["logging"] = {"tensorboard": False, "plots": False}
    d["agent"]["T"] = 10
    out = train(parse_config(d, "test"), tmp_path / "run", iterations=1, progress=False)
    assert not (out / "tb").exists()
    assert not list(out.glob("*.png"))
    assert (out / "state.pkl").exists()


# --- MCAP -------------------------------------------------------------------------------------------
mcap_ros2 = pytest.importorskip("mcap_ros2")


def _synthetic(rng, M=2, N=2, T=5, image=True):
    out = []
    for m in range(M):
        X = rng.standard_normal((N, T, 32))
        U = rng.standard_normal((N, T, 7))
        obs = {"image": rng.integers(0, 255, (N, T, 6, 8, 3), dtype=np.uint8)} if image else {}
        meta = [TrialMeta(condition=m, seed=100 * m + i, discarded=(i == 1 and m == 1)) for i in range(N)]
        out.append(Trajectories(X, U, meta, obs))
    return out


def test_mcap_roundtrip_messages_schemas_and_values(tmp_path):
    from mcap.reader import make_reader

    from gps_ros.record import IMAGE_TOPIC, read_trials_mcap, write_trials_mcap

    trials = _synthetic(np.random.default_rng(0))
    path = tmp_path / "t.mcap"
    counts = write_trials_mcap(path, trials, dt=0.05, joint_names=[f"panda_joint{i}" for i in range(1, 8)])
    assert counts == {"/joint_states": 20, "/effort_controller/commands": 20, IMAGE_TOPIC: 20,
                      "/gps_ros/trials": 4}
    msgs = read_trials_mcap(path)      # mcap's reader with mcap_ros2's CDR decoder
    assert {k: len(v) for k, v in msgs.items()} == counts
    js, cmd, img = msgs["/joint_states"], msgs["/effort_controller/commands"], msgs[IMAGE_TOPIC]
    assert js[0].schema.name == "sensor_msgs/msg/JointState"
    assert cmd[0].schema.name == "std_msgs/msg/Float64MultiArray"
    assert img[0].schema.name == "sensor_msgs/msg/Image"
    assert "MSG: builtin_interfaces/Time" in js[0].schema.data.decode()
    assert js[0].channel.message_encoding == "cdr"
    # trial 1 of condition 1 is the 4th trial on the timeline: message 3 * 5 + 2 is its t = 2
    k = 3 * 5 + 2
    tr = trials[1]
    assert js[k].ros_msg.name[0] == "panda_joint1"
    np.testing.assert_array_equal(js[k].ros_msg.position, tr.X[1, 2, 0:7])
    np.testing.assert_array_equal(js[k].ros_msg.velocity, tr.X[1, 2, 7:14])
    np.testing.assert_array_equal(js[k].ros_msg.effort, tr.U[1, 2])
    np.testing.assert_array_equal(cmd[k].ros_msg.data, tr.U[1, 2])
    assert cmd[k].ros_msg.layout.dim[0].size == 7
    im = img[k].ros_msg
    assert (im.height, im.width, im.encoding, im.step) == (6, 8, "rgb8", 24)
    np.testing.assert_array_equal(np.frombuffer(bytes(im.data), np.uint8).reshape(6, 8, 3),
                                  tr.obs["image"][1, 2])
    # timestamps: header stamp == log time, strictly increasing, 50 ms apart within a trial
    times = [m.log_time_ns for m in js]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[1] - times[0] == 50_000_000
    st = js[k].ros_msg.header.stamp
    assert st.sec * 10**9 + st.nanosec == js[k].log_time_ns
    with open(path, "rb") as f:
        md = {r.name: r.metadata for r in make_reader(f).iter_metadata()}
    index = json.loads(md["gps_ros"]["trials"])
    assert index["c01/t01"]["discarded"] is True and index["c01/t01"]["seed"] == 101
    assert index["c01/t01"]["start_ns"] == js[15].log_time_ns
    # each trial whole as a gps_msgs/Trajectory at its last step, stamped per step
    traj = msgs["/gps_ros/trials"]
    assert traj[0].schema.name == "gps_msgs/msg/Trajectory"
    assert "MSG: sensor_msgs/Image" in traj[0].schema.data.decode()
    assert traj[3].log_time_ns == js[19].log_time_ns
    t3 = traj[3].ros_msg
    assert (t3.condition, t3.horizon, t3.dx, t3.du, t3.seed, t3.discarded) == (1, 5, 32, 7, 101, True)
    np.testing.assert_array_equal(np.reshape(t3.states, (5, 32)), tr.X[1])
    assert [s.sec * 10**9 + s.nanosec for s in t3.stamps] == times[15:20]
    assert len(t3.images) == 0          # the frames are on the camera topic once


def test_a_recording_reads_back_with_its_trials_and_controllers(tmp_path):
    """read_recording: the sampler's states, the actions, the metadata, the frames and the
    iteration's controllers come back exactly (controllers: Σ through its Cholesky factor)."""
    from gps_ros.control import LinearGaussianController
    from gps_ros.record import read_recording, write_trials_mcap

    rng = np.random.default_rng(1)
    trials = _synthetic(rng)
    ctrls = []
    for m in range(2):
        A = rng.standard_normal((5, 7, 7))
        ctrls.append(LinearGaussianController(rng.standard_normal((5, 7, 32)),
                                              rng.standard_normal((5, 7)),
                                              A @ np.swapaxes(A, -1, -2) + np.eye(7)))
    path = tmp_path / "t.mcap"
    counts = write_trials_mcap(path, trials, dt=0.05, controllers=ctrls,
                               metadata={"iteration": "3"})
    assert counts["/gps_ros/controllers"] == 2
    rec = read_recording(path)
    assert rec.metadata["iteration"] == "3" and float(rec.metadata["dt"]) == 0.05
    for a, b in zip(trials, rec.trials):
        np.testing.assert_array_equal(b.X, a.X)
        np.testing.assert_array_equal(b.U, a.U)
        np.testing.assert_array_equal(b.obs["image"], a.obs["image"])
        assert [(m.condition, m.seed, m.discarded) for m in b.meta] == \
            [(m.condition, m.seed, m.discarded) for m in a.meta]
    for a, b in zip(ctrls, rec.controllers):
        np.testing.assert_array_equal(b.K, a.K)
        np.testing.assert_array_equal(b.k, a.k)
        np.testing.assert_allclose(b.pol_covar, a.pol_covar, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="controllers for"):
        write_trials_mcap(tmp_path / "bad.mcap", trials, dt=0.05, controllers=ctrls[:1])


def test_the_recorded_gps_msgs_schemas_are_the_interface_package_s(tmp_path):
    """record.py carries gps_msgs/Trajectory and LinearGaussianController as text (a pip install
    has no gps_msgs); they must be the package's .msg files without comments, or rosbag2 would
    play fields into the wrong places."""
    from gps_ros import record

    msg_dir = Path(__file__).resolve().parents[2] / "gps_msgs" / "msg"

    def fields(text):
        out = []
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(" ".join(line.split()))
        return out

    assert fields(record.TRAJECTORY_MSG) == fields((msg_dir / "Trajectory.msg").read_text())
    assert fields(record.CONTROLLER_MSG) == fields(
        (msg_dir / "LinearGaussianController.msg").read_text())


def test_export_mcap_cli_and_config_flag(run2, tmp_path, capsys):
    from gps_ros.record import read_trials_mcap

    # the config flag wrote every iteration's trials
    for it in (1, 2):
        got = read_trials_mcap(run2 / "iterations" / f"{it:04d}" / "trials.mcap")
        assert len(got["/joint_states"]) == 2 * 3 * 40 and "/camera/image_raw" not in got
    out = tmp_path / "x.mcap"
    assert main(["export-mcap", "--run", str(run2), "--iteration", "1", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    got = read_trials_mcap(out)
    trials = Trajectories.load(run2 / "iterations" / "0001" / "trials_c01.npz")
    np.testing.assert_array_equal(got["/joint_states"][3 * 40 + 7].ros_msg.position, trials.X[0, 7, :7])
