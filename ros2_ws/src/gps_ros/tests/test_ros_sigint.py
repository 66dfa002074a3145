"""Ctrl-C of ``ros2 launch gps_ros train.launch.py`` in the middle of a trial on a robot (a
free-running sim_node standing in for it): every process exits within the launch's timeouts, with
no traceback, the last command the robot got is the hold command, nothing is left running, and the
same launch resumes the experiment.  Runs ``ros2 launch`` as a user would (needs the ros2 CLI and
the colcon-built workspace; skipped with the reason elsewhere)."""
import os
import signal
import subprocess
import threading
import time

import pytest
import yaml

from launch_helpers import TopicProbe, reach_config, read_metrics, require_ros, temp_dir

require_ros(cli=True)

import rclpy  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402


class Launch:
    """``ros2 launch ...`` in its own process group (a terminal's Ctrl-C signals the whole
    group), its output collected line by line."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(["ros2", "launch", "gps_ros", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def text(self):
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if needle in self.text:
                return True
            time.sleep(0.1)
        return needle in self.text

    def ctrl_c(self):
        os.killpg(self.proc.pid, signal.SIGINT)

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def kill(self):
        if self.group_alive():
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def probe():
    rclpy.init()
    p = TopicProbe("sigint_probe")
    yield p
    p.close()
    rclpy.shutdown()


def test_ctrl_c_mid_trial_then_resume(probe):
    tmp = temp_dir("sigint")
    config = reach_config(tmp / "reach.yaml", iterations=2)
    sampler = tmp / "sampler.yaml"
    sampler.write_text(yaml.safe_dump({"/**/sampler_node": {"ros__parameters": {
        "joint_names": [f"panda_joint{i}" for i in range(1, 8)], "rate_hz": 20.0,
        "lockstep": False, "state_source": "fk", "reset_mode": "wait", "reset_service": "", "settle_time": 0.2,
        "stale_periods": 5.0}}}))
    run = tmp / "run"
    train_args = [f"config:={config}", "use_sim:=false", f"sampler_params:={sampler}",
                  f"experiment_dir:={run}"]
    probe.listen(Float64MultiArray, "/effort_controller/commands")
    robot = Launch("sim.launch.py", f"config:={config}", "lockstep:=false")
    train = Launch("train.launch.py", *train_args)
    try:
        assert train.wait_for("iteration 1/2", 240), train.text[-3000:]
        assert probe.wait_for("/effort_controller/commands", 5, timeout=10)
        time.sleep(0.7)                                    # inside a trial of iteration 2
        moving = probe.last["/effort_controller/commands"].data
        assert any(v != 0.0 for v in moving), "no trial was running"
        t0 = time.monotonic()
        train.ctrl_c()
        train.proc.wait(timeout=30)
        took = time.monotonic() - t0
        train.reader.join(5)
        out = train.text
        assert "Traceback" not in out and "RCLError" not in out, out[-4000:]
        assert not train.group_alive(), "processes left running after ros2 launch exited"
        assert took < 15, f"shutdown took {took:.1f} s"
        time.sleep(0.3)
        assert all(v == 0.0 for v in probe.last["/effort_controller/commands"].data), \
            "the robot's last command is not the hold command"
        assert [r["iteration"] for r in read_metrics(run)] == [1]

        again = Launch("train.launch.py", *train_args)
        try:
            assert again.wait_for("training done: 2 iterations", 240), again.text[-3000:]
            assert again.proc.wait(timeout=30) == 0, again.text[-3000:]
            assert "resuming" in again.text
        finally:
            again.kill()
        assert [r["iteration"] for r in read_metrics(run)] == [1, 2]
    finally:
        train.kill()
        robot.ctrl_c()
        try:
            robot.proc.wait(timeout=30)
        finally:
            robot.kill()
    robot.reader.join(5)
    assert "Traceback" not in robot.text, robot.text[-3000:]
