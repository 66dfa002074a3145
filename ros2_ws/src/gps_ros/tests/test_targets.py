"""``gps-ros targets record | show``: FK of the recorded joints into the config's targets."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from gps_ros.cli import main
from gps_ros.config import load_config
from gps_ros.targets import set_condition

CONFIG = Path(__file__).resolve().parents[1] / "config" / "panda_reach.yaml"
Q = [0.25, -0.1, -0.15, -2.05, 0.1, 1.95, 0.6]          # a reachable pose in front of the arm
Q2 = [-0.3, 0.1, 0.2, -1.8, -0.1, 2.1, 1.0]


@pytest.fixture
def cfg_file(tmp_path) -> Path:
    path = tmp_path / "reach.yaml"
    shutil.copy(CONFIG, path)
    return path


def record(path, *extra, joints=Q):
    return main(["targets", "record", "--config", str(path), *extra,
                 *(["--joints", *map(str, joints)] if joints is not None else [])])


def ee_of(path: Path, k: int, q, simulated: bool = False) -> np.ndarray:
    """Condition ``k`` of the config at ``path`` with the arm at ``q``: the state's EE points
    relative to their targets (what the EE cost penalises), from the robot model (what the
    sampler computes on a real arm) or, ``simulated``, from the PyBullet simulator."""
    from gps_ros.sim.arm import ArmSim
    from gps_ros.task import TaskModel

    cfg = load_config(path)
    if not simulated:
        task = TaskModel(cfg.agent)
        return task.state(q, None, k)[task.layout.ee_points].reshape(-1, 3)
    with ArmSim(cfg.agent) as sim:
        sim.reset(k)
        sim.pose_scene(q, cfg.agent.conditions[k].target)
        return sim.state()[sim.layout.ee_points].reshape(-1, 3)


def test_record_replaces_one_target_keeps_comments(cfg_file, capsys):
    before = cfg_file.read_text()
    assert record(cfg_file, "--condition", "1") == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("condition 1 target <- [") and "(from joints [0.250, -0.100" in out
    assert str(cfg_file) in out
    after = cfg_file.read_text()
    a, b = before.splitlines(), after.splitlines()
    changed = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    assert len(a) == len(b) and len(changed) == 1           # one line, comments and order kept
    assert a[changed[0]].strip() == "- target: [0.60, -0.20, 0.30]"
    assert b[changed[0]].lstrip().startswith("- target: [")
    old, new = load_config(CONFIG), load_config(cfg_file)   # still a valid config
    for k in (0, 2, 3):
        assert new.agent.conditions[k] == old.agent.conditions[k]
    assert new.agent.conditions[1].start_joint_positions is None
    assert new.agent.conditions[1].target != old.agent.conditions[1].target
    assert new.model_dump(exclude={"agent": {"conditions"}}) == \
        old.model_dump(exclude={"agent": {"conditions"}})


def test_recorded_target_is_reached_at_distance_zero(cfg_file):
    """The stored target is exactly the EE point the cost measures: 0 at the recorded joints."""
    assert record(cfg_file, "--condition", "2") == 0
    d = ee_of(cfg_file, 2, Q)
    assert np.linalg.norm(d[0]) < 1e-12
    assert np.linalg.norm(ee_of(cfg_file, 2, Q2)[0]) > 0.1   # and not at some other pose
    # the simulator's own kinematics: PyBullet's link states are ~1e-8 m off exact kinematics
    assert np.linalg.norm(ee_of(cfg_file, 2, Q, simulated=True)[0]) < 1e-7


def test_start_pose_then_target(cfg_file, capsys):
    """--start records the start pose (the target stays); then the target from another pose."""
    old_target = load_config(cfg_file).agent.conditions[0].target
    assert record(cfg_file, "--condition", "0", "--start", joints=Q2) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        "condition 0 start_joint_positions <- [-0.300, 0.100")
    c = load_config(cfg_file).agent.conditions[0]
    assert c.start_joint_positions == Q2 and c.target == old_target
    assert record(cfg_file, "--condition", "0") == 0
    c = load_config(cfg_file).agent.conditions[0]
    assert c.start_joint_positions == Q2                    # recorded exactly
    assert np.linalg.norm(ee_of(cfg_file, 0, Q)[0]) < 1e-12
    from gps_ros.sim.arm import ArmSim

    with ArmSim(load_config(cfg_file).agent) as sim:  # the trial starts at Q2
        assert np.array_equal(sim.reset(0)[sim.layout.joint_pos], np.asarray(Q2))
    assert "start_joint_positions: [-0.3, 0.1, 0.2, -1.8, -0.1, 2.1, 1.0]" in cfg_file.read_text()


def test_append_condition(cfg_file, capsys):
    assert record(cfg_file, "--condition", "4") == 0
    assert "condition 4 (new) target <- [" in capsys.readouterr().out
    cfg = load_config(cfg_file)
    assert len(cfg.agent.conditions) == 5
    assert np.linalg.norm(ee_of(cfg_file, 4, Q)[0]) < 1e-12
    text = cfg_file.read_text()
    assert "# LQR-FLM on the PyBullet Franka Panda" in text and "# 5 s trials" in text


@pytest.mark.parametrize("args, joints, message", [
    (["--condition", "5"], Q, "--condition 5 is out of range"),
    (["--condition", "-1"], Q, "--condition must be >= 0"),
    (["--condition", "0"], Q[:6], "--joints needs 7 values"),
    (["--condition", "0"], Q + [0.0], "--joints needs 7 values"),
    (["--condition", "0"], Q[:6] + ["nan"], "joint positions must be finite"),
    (["--condition", "4", "--start"], Q, "condition 4 does not exist yet"),
    (["--condition", "0", "--urdf", "/nonexistent.urdf"], Q, "no such file"),
])
def test_bad_input_exits_2_with_one_line(cfg_file, capsys, args, joints, message):
    before = cfg_file.read_bytes()
    assert record(cfg_file, *args, joints=joints) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gps-ros: error: ") and message in err[0], err
    assert cfg_file.read_bytes() == before                   # untouched


def test_invalid_config_is_not_touched(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  conditions:\n    - target: [0.5, 0.0]\n")
    assert record(bad, "--condition", "0") == 2
    assert "config error" in capsys.readouterr().err
    assert bad.read_text() == "agent:\n  conditions:\n    - target: [0.5, 0.0]\n"


def test_without_ros_says_source_ros_or_pass_joints(cfg_file, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rclpy", None)          # as on a machine without ROS 2
    assert record(cfg_file, "--condition", "0", joints=None) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "source ROS 2" in err[0] and "--joints" in err[0], err


def test_urdf_gives_the_same_point_as_the_sim(cfg_file, capsys, tmp_path):
    """--urdf: the robot's own description in place of the config's (pybullet_data's Panda: the
    same kinematics); one that lacks the config's EE link is one line."""
    import pybullet_data

    urdf = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
    assert record(cfg_file, "--condition", "0", "--urdf", str(urdf)) == 0
    t_urdf = load_config(cfg_file).agent.conditions[0].target
    assert record(cfg_file, "--condition", "0") == 0
    assert np.allclose(load_config(cfg_file).agent.conditions[0].target, t_urdf, atol=1e-12)
    other = tmp_path / "other.urdf"
    other.write_text(urdf.read_text().replace("panda_grasptarget", "tool_tip"))
    assert record(cfg_file, "--condition", "0", "--urdf", str(other)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "agent.robot.ee_link: link 'panda_grasptarget' is not in" in err[0], err


def test_unusual_layout_falls_back_to_a_full_rewrite(tmp_path, capsys):
    """An anchored target cannot be edited in place: the whole file is rewritten (with a
    warning), and the result is still exact and valid."""
    path = tmp_path / "anchored.yaml"
    path.write_text("# comment\nagent:\n  conditions:\n    - target: &t [0.5, 0.0, 0.3]\n"
                    "    - target: *t\n")
    assert record(path, "--condition", "0") == 0
    assert "comments and formatting are lost" in capsys.readouterr().err
    cfg = load_config(path)
    assert cfg.agent.conditions[1].target == [0.5, 0.0, 0.3]
    assert np.linalg.norm(ee_of(path, 0, Q)[0]) < 1e-9


def test_text_edit_layouts_round_trip(tmp_path):
    """Flow lists, block lists and flow mappings are edited in place (comments kept)."""
    base = "name: x  # top\nagent:\n  T: 10\n"
    t = [1e-5, -0.25, 0.123456789012345678]
    for text in [base + "  conditions: [{target: [0.6, 0.2, 0.3]}]  # c\n  joint_damping: 0.5\n",
                 base + "  conditions:\n  - target:\n    - 0.6\n    - 0.2\n    - 0.3\n  # c\n",
                 base + "  conditions:\n    - {target: [0.6, 0.2, 0.3]}  # c\n",
                 (base + "  conditions:\n    - target: [0.6, 0.2, 0.3]  # c\n").replace("\n", "\r\n")]:
        path = tmp_path / "c.yaml"
        path.write_bytes(text.encode())
        assert set_condition(path, 0, start=[0.1] * 7)[1]
        assert set_condition(path, 0, target=t)[1]
        assert set_condition(path, 1, target=t)[1]
        new = path.read_bytes().decode()
        assert "# top" in new and "# c" in new and ("\r\n" in new) == ("\r\n" in text)
        conds = yaml.safe_load(new)["agent"]["conditions"]
        assert conds == [{"target": t, "start_joint_positions": [0.1] * 7}, {"target": t}]


def test_dry_run_and_show(cfg_file, capsys):
    before = cfg_file.read_bytes()
    assert record(cfg_file, "--condition", "0", "--dry-run") == 0
    assert "dry run" in capsys.readouterr().out and cfg_file.read_bytes() == before
    assert main(["targets", "show", "--config", str(cfg_file)]) == 0
    out = capsys.readouterr().out
    assert "4 conditions" in out and "condition 3: target [0.400, -0.200, 0.550]" in out
    assert "(agent default)" in out


@pytest.mark.skipif(os.name != "posix", reason="atomic replace semantics checked on POSIX")
def test_write_is_atomic_and_keeps_mode(cfg_file):
    cfg_file.chmod(0o640)
    assert record(cfg_file, "--condition", "0") == 0
    assert (cfg_file.stat().st_mode & 0o777) == 0o640
    assert not [p for p in cfg_file.parent.iterdir() if p.name.endswith(".tmp")]


# --- the live path: one sensor_msgs/JointState from ROS 2 ----------------------------------------
def _require_rclpy():
    pytest.importorskip("rclpy", reason="reading joint_states needs ROS 2 (source ROS 2 Jazzy)")
    pytest.importorskip("sensor_msgs", reason="reading joint_states needs sensor_msgs (ROS 2)")


class _Publisher:
    """Publishes a JointState (finger joints too, names shuffled) at 20 Hz in its own context."""

    def __init__(self, topic: str, q) -> None:
        import rclpy
        from sensor_msgs.msg import JointState

        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node(f"test_targets_pub_{os.getpid()}", context=self.context,
                                      enable_rosout=False, start_parameter_services=False)
        self.pub = self.node.create_publisher(JointState, topic, 10)
        names = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1"]
        pos = list(q) + [0.04]
        order = [7, 3, 0, 6, 1, 5, 2, 4]
        self.msg = JointState(name=[names[i] for i in order], position=[pos[i] for i in order])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            self.pub.publish(self.msg)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()


def test_live_joint_states(cfg_file, tmp_path, capsys):
    _require_rclpy()
    topic = f"/test_targets_{os.getpid()}/joint_states"
    ref = tmp_path / "ref.yaml"
    shutil.copy(cfg_file, ref)
    assert record(ref, "--condition", "1") == 0                # the same pose given explicitly
    pub = _Publisher(topic, Q)
    try:
        assert record(cfg_file, "--condition", "1", "--topic", topic, "--timeout", "10",
                      joints=None) == 0
    finally:
        pub.close()
    assert load_config(cfg_file).agent.conditions[1].target == \
        load_config(ref).agent.conditions[1].target
    capsys.readouterr()
    # nobody publishes: exit 1 after the timeout, one line that says so
    assert record(cfg_file, "--condition", "1", "--topic", topic + "_none", "--timeout", "0.5",
                  joints=None) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "within 0.5 s" in err[0] and "no publisher" in err[0], err


def test_live_cli_process_without_ros_exits_2(cfg_file):
    """The real command line in a fresh interpreter: exit status 2 and one line."""
    try:
        import rclpy  # noqa: F401

        pytest.skip("rclpy is importable here; the no-ROS path is covered by the monkeypatched test")
    except ImportError:
        pass
    r = subprocess.run([sys.executable, "-m", "gps_ros.cli", "targets", "record", "--config",
                        str(cfg_file), "--condition", "0"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("gps-ros")]
    assert len(lines) == 1 and "--joints" in lines[0], r.stderr
