"""launch_testing: a robot run as an operator would do it, against the simulated Panda standing in
for the robot (``sim.launch.py``, free-running, topics only).  The shipped ``robot_standin.yaml``
resets by driving the arm (``reset_mode: move``) to each condition's start pose -- different per
condition here -- and ``prepare_conditions:=true`` makes the coordinator wait for the operator
before each condition; the test confirms through ``/coordinator_node/continue`` (std_srvs/Trigger).
Checks: a prompt per new condition, every reset within tolerance, trials starting at their start
poses, the run completing."""
import os
import unittest

import pytest
import yaml

from launch_helpers import (TopicProbe, check_resets, check_trials_start_at, read_metrics,
                            require_ros, temp_dir)
from conftest import small_config_dict

SHARE = require_ros()

import launch  # noqa: E402
import launch_testing  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

TMP = temp_dir("reset")
RUN = TMP / "run"
STARTS = [[0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785], [0.4, 0.0, -0.2, -1.9, 0.2, 1.9, 0.5]]
cfg = small_config_dict(iterations=2)
cfg["agent"]["T"] = 20
for c, q in zip(cfg["agent"]["conditions"], STARTS):
    c["start_joint_positions"] = q
CONFIG = TMP / "reach.yaml"
CONFIG.write_text(yaml.safe_dump(cfg))
STANDIN = os.path.join(SHARE, "config", "ros", "robot_standin.yaml")


@pytest.mark.launch_test
def generate_test_description():
    robot = launch.actions.GroupAction([launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "sim.launch.py")),
        launch_arguments={"config": str(CONFIG), "lockstep": "false"}.items())],
        scoped=True, forwarding=False)
    train = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "train.launch.py")),
        launch_arguments={"config": str(CONFIG), "use_sim": "false", "sampler_params": STANDIN,
                          "experiment_dir": str(RUN), "prepare_conditions": "true"}.items())
    return launch.LaunchDescription([robot, train, launch_testing.actions.ReadyToTest()])


def _wait_prompts(proc_output, n: int, timeout: float) -> list:
    """The coordinator's operator prompts once there are at least ``n`` (the output is searched
    from its start, so repeated prompts are counted, not matched again)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        text = "".join(o.text.decode() for o in proc_output if "coordinator" in o.process_name)
        prompts = [ln for ln in text.splitlines() if "OPERATOR: prepare condition" in ln]
        if len(prompts) >= n or time.monotonic() > deadline:
            return prompts
        time.sleep(0.2)


class TestOperatorAndResets(unittest.TestCase):
    def test_operator_confirms_each_condition_and_training_ends(self, proc_info, proc_output):
        import rclpy
        from std_srvs.srv import Trigger

        rclpy.init()
        probe = TopicProbe("operator")
        try:
            # 2 iterations x 2 conditions: the set-up changes 4 times
            for i, k in enumerate((0, 1, 0, 1)):
                prompts = _wait_prompts(proc_output, i + 1, timeout=120)
                self.assertIn(f"OPERATOR: prepare condition {k}:", prompts[i])
                res = probe.call(Trigger, "/coordinator_node/continue", Trigger.Request())
                self.assertTrue(res.success, res.message)
            proc_info.assertWaitForShutdown(process="coordinator_node", timeout=300)
            proc_output.assertWaitFor("training done: 2 iterations", process="coordinator_node",
                                      timeout=10)
        finally:
            probe.close()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        for proc in proc_info.processes():
            self.assertEqual(proc_info[proc].returncode, 0, proc.process_details["name"])

    def test_every_reset_within_tolerance(self, proc_output):
        text = "".join(o.text.decode() for o in proc_output if "sampler_node" in
                       o.process_name)
        resets = check_resets(self, text, 12)                  # 2 iterations x 2 x 3 trials
        print(f"resets: {len(resets)}, time {min(s for _, s, _ in resets):.2f}-"
              f"{max(s for _, s, _ in resets):.2f} s, max joint error "
              f"{max(e for _, _, e in resets):.1f} mrad")

    def test_trials_start_at_their_start_pose(self):
        rows = read_metrics(RUN)
        self.assertEqual(len(rows), 2)
        self.assertEqual(sum(r["discarded"] for r in rows), 0)
        files = sorted((RUN / "trials").rglob("c*_*.npz"))
        self.assertEqual(len(files), 12)
        check_trials_start_at(self, files, STARTS)
