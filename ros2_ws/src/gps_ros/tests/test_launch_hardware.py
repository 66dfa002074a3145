"""launch_testing: hardware mode (``train.launch.py use_sim:=false``) against a free-running
sim_node standing in for the robot (``sim.launch.py``, topics only, like a real arm's ros2_control
controllers).  With the commands reaching the robot's controller one iteration trains; with the
robot's controller listening elsewhere (the commands reach nothing) the sampler sees an arm that
never moves and the run stops at once with "robot did not respond" instead of training on it."""
import os
import unittest

import pytest
import yaml

from launch_helpers import reach_config, read_metrics, require_ros, temp_dir

SHARE = require_ros()

import launch  # noqa: E402
import launch_testing  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

TMP = temp_dir("hardware")
CONFIG = reach_config(TMP / "reach.yaml", iterations=1, T=20)
SAMPLER = TMP / "sampler.yaml"
SAMPLER.write_text(yaml.safe_dump({"/**/sampler_node": {"ros__parameters": {
    "joint_names": [f"panda_joint{i}" for i in range(1, 8)],
    "rate_hz": 20.0, "lockstep": False, "state_source": "fk", "reset_mode": "wait", "reset_service": "",
    "settle_time": 0.2, "command_mode": "effort", "stale_periods": 5.0}}}))


@pytest.mark.launch_test
@launch_testing.parametrize("robot_controller", ["effort_controller", "other_controller"])
def generate_test_description(robot_controller):
    run = TMP / f"run_{robot_controller}"
    # the robot and the training are two launches (two terminals on a real robot): scoped groups,
    # so that the robot's controller:= does not leak into train.launch.py's arguments
    robot = launch.actions.GroupAction([launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "sim.launch.py")),
        launch_arguments={"config": CONFIG, "lockstep": "false",
                          "controller": robot_controller}.items())], scoped=True, forwarding=False)
    train = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "train.launch.py")),
        launch_arguments={"config": CONFIG, "use_sim": "false", "sampler_params": str(SAMPLER),
                          "experiment_dir": str(run)}.items())
    return (launch.LaunchDescription([robot, train, launch_testing.actions.ReadyToTest()]),
            {"run": run, "responds": robot_controller == "effort_controller"})


class TestHardwareMode(unittest.TestCase):
    def test_training_ends(self, proc_info, proc_output, responds):
        proc_info.assertWaitForShutdown(process="coordinator_node", timeout=300)
        if responds:
            proc_output.assertWaitFor("training done: 1 iterations", process="coordinator_node",
                                      timeout=10)
        else:
            proc_output.assertWaitFor("robot did not respond", process="coordinator_node",
                                      timeout=10)


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info, responds):
        for proc in proc_info.processes():
            name = proc.process_details["name"]
            expected = 1 if (not responds and "coordinator_node" in name) else 0
            self.assertEqual(proc_info[proc].returncode, expected, name)

    def test_trials(self, run, responds):
        rows = read_metrics(run)
        if responds:
            self.assertEqual(len(rows), 1)
            self.assertEqual(rows[0]["discarded"], 0)
        else:
            self.assertEqual(rows, [])
