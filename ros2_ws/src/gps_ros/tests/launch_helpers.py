"""Shared by the launch tests (tests/test_launch_*.py and tests/test_ros_sigint.py): skip with a
reason where ROS 2 or the colcon-installed gps_ros is absent, small task configs, the in-process
reference run."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from typing import Optional
from pathlib import Path

import pytest
import yaml

from conftest import small_config_dict, small_peg_config_dict, small_vision_config_dict


def require_ros(cli: bool = False) -> str:
    """The gps_ros share directory of a colcon install; skips the module where there is none."""
    for mod in ("rclpy", "launch", "launch_ros", "launch_testing", "gps_msgs"):
        pytest.importorskip(mod, reason=f"ROS 2 launch tests need {mod} (a sourced ROS 2 Jazzy "
                                        "and the colcon-built workspace)")
    try:
        from ament_index_python.packages import get_package_share_directory

        share = get_package_share_directory("gps_ros")
    except Exception:  # noqa: BLE001
        pytest.skip("gps_ros is not installed in the ament index (colcon build, then source "
                    "install/setup.bash)", allow_module_level=True)
    if cli and shutil.which("ros2") is None:
        pytest.skip("the ros2 command is not on PATH", allow_module_level=True)
    return share


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"gps_ros_{prefix}_"))


def reach_config(path: Path, iterations: int = 2, dynamics: Optional[dict] = None, **agent) -> str:
    """The CI-sized reach task (2 conditions, T=40, 3 trials per condition) as a YAML file
    (``dynamics`` replaces the dynamics section, ``agent`` entries update the agent's)."""
    d = small_config_dict(iterations=iterations)
    d["agent"].update(agent)
    if dynamics is not None:
        d["dynamics"] = dynamics
    path.write_text(yaml.safe_dump(d))
    return str(path)


def peg_config(path: Path, iterations: int = 2) -> str:
    """The CI-sized peg insertion (config/panda_peg.yaml with one hole) as a YAML file."""
    path.write_text(yaml.safe_dump(small_peg_config_dict(iterations=iterations)))
    return str(path)


def vision_config(path: Path, iterations: int = 2) -> str:
    """The tiny visuomotor MDGPS task of the unit tests as a YAML file."""
    d = small_vision_config_dict()
    d["iterations"] = iterations
    path.write_text(yaml.safe_dump(d))
    return str(path)


#: the package's shipped task configs (the source tree's, as the tests' in-process runs read them)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


def require_robot_data() -> None:
    """Skip where the example-robot-data wheel (the UR5's and SO-101's URDFs) is missing."""
    from gps_ros.robot import package_share

    if package_share("example-robot-data") is None:
        pytest.skip("needs the example-robot-data wheel (pip install 'gps_ros[robots]')",
                    allow_module_level=True)


def robot_config_dict(robot: str, iterations: int = 2, T: int = 20, conditions: int = 2,
                      samples: int = 2) -> dict:
    """A CI-sized reach on a shipped robot (``config/<robot>_reach.yaml``: its robot section,
    command interface, start pose, cost and algorithm), with its first ``conditions`` targets,
    ``T`` steps and ``samples`` trials per condition."""
    d = yaml.safe_load((CONFIG_DIR / f"{robot}_reach.yaml").read_text())
    d["name"] = f"ci_{robot}_reach"
    d["iterations"] = iterations
    d["agent"]["T"] = T
    d["agent"]["conditions"] = d["agent"]["conditions"][:conditions]
    d["algorithm"]["samples_per_condition"] = samples
    d["dynamics"]["prior"]["max_samples"] = 2 * samples
    return d


def robot_config(path: Path, robot: str, **kw) -> str:
    """:func:`robot_config_dict` as a YAML file."""
    path.write_text(yaml.safe_dump(robot_config_dict(robot, **kw)))
    return str(path)


def read_metrics(run: Path) -> list:
    from gps_ros.experiment import Experiment

    return Experiment.open(run).read_metrics()


def in_process_metrics(config: str, out: Path) -> list:
    """``gps-ros train`` of the same config and seed, in this process."""
    from gps_ros.config import load_config
    from gps_ros.train import train

    train(load_config(config), out, progress=False)
    return read_metrics(out)


def no_process_left(marker: str) -> list:
    """Command lines of processes still running whose arguments contain ``marker``."""
    left = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd and "pytest" not in cmd:
            left.append(f"{pid}: {cmd.strip()}")
    return left


def constant_policy(run: Path, config: str, command) -> Path:
    """``run/policy.pt`` (and ``run/config.yaml``): the policy network of ``config`` whose output
    is the constant ``command`` (u_std = 0) in the config robot's command interface (torques,
    joint velocities or joint positions, one per joint): a vision policy (it needs frames) where
    the config has a camera and ``policy.use_image`` is not false, else a blind one; an
    unmistakable effect either way."""
    import numpy as np
    import torch

    from gps_ros.config import load_config
    from gps_ros.policy.export import export_torchscript
    from gps_ros.task import TaskModel
    from gps_ros.train import build_policy

    cfg = load_config(config)
    policy, _ = build_policy(cfg, TaskModel(cfg.agent))
    net = policy.trainer.net
    u = np.asarray(command, dtype=np.float32)
    if u.shape != tuple(net.u_mean.shape):
        raise ValueError(f"command has {u.size} values; the robot of {config} has "
                         f"{net.u_mean.numel()} joints")
    with torch.no_grad():
        net.u_std.zero_()
        net.u_mean.copy_(torch.as_tensor(u))
    run.mkdir(parents=True, exist_ok=True)
    shutil.copy(config, run / "config.yaml")
    return export_torchscript(net, run / "policy.pt")


def constant_torque_policy(run: Path, config: str, torque) -> Path:
    """:func:`constant_policy` of an effort-controlled robot (the Panda of the vision tests)."""
    return constant_policy(run, config, torque)


class TopicProbe:
    """A node of the test process that records the last messages of some topics and calls
    services (rclpy is initialised by the caller)."""

    def __init__(self, name: str):
        import threading

        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(name)
        self.last = {}
        self.count = {}
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def listen(self, msg_type, topic: str, qos=10):
        """Record ``topic``; ``qos``: e.g. rclpy.qos.qos_profile_sensor_data for camera streams
        (best effort: a reliable subscription does not match their publisher)."""
        def cb(msg):
            self.last[topic] = msg
            self.count[topic] = self.count.get(topic, 0) + 1
        self.node.create_subscription(msg_type, topic, cb, qos)

    def wait_for(self, topic: str, n: int = 1, timeout: float = 30.0) -> bool:
        import time

        deadline = time.monotonic() + timeout
        start = self.count.get(topic, 0)
        while time.monotonic() < deadline:
            if self.count.get(topic, 0) >= start + n:
                return True
            time.sleep(0.05)
        return False

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        from gps_ros.ros.clients import wait_future

        client = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available")
        return wait_future(client.call_async(request), timeout, name)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


RESET_LINE = re.compile(r"reset to condition (\d): ([\d.]+) s, max joint error ([\d.]+) mrad")


def check_resets(test, text: str, count: int, conditions=(0, 1), max_error_mrad: float = 10.0,
                 max_seconds: float = 10.0) -> list:
    """The sampler's reset lines in ``text``: ``count`` of them, over ``conditions``, each within
    ``max_error_mrad`` of the start pose in under ``max_seconds``; returns (condition, s, mrad)."""
    resets = [(int(c), float(s), float(e)) for c, s, e in RESET_LINE.findall(text)]
    test.assertEqual(len(resets), count, text[-2000:])
    test.assertEqual({c for c, _, _ in resets}, set(conditions))
    for _, secs, err in resets:
        test.assertLessEqual(err, max_error_mrad)
        test.assertLess(secs, max_seconds)
    return resets


def check_trials_start_at(test, files, starts, T: int = None) -> None:
    """Every trial file's first state is its condition's start pose (within 11 mrad), with one
    command per joint (and ``T`` steps when given)."""
    from gps_ros.sample import Trajectories

    import numpy as np

    n = len(starts[0])
    for f in files:
        tr = Trajectories.load(f)
        if T is not None:
            test.assertEqual(tr.U.shape, (1, T, n), f)
        q0 = tr.X[0, 0, :n]
        test.assertLess(np.abs(q0 - np.asarray(starts[tr.meta[0].condition])).max(), 0.011, f)


def wait_for_text(path: Path, text: str, timeout: float) -> bool:
    """Whether ``text`` appears in the file ``path`` within ``timeout`` s (a log being written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False
