"""launch_testing: training on arms driven by the real ros2_control -- ``ros2_control_mock.launch.py``
(robot_state_publisher, the controller_manager with mock_components/GenericSystem hardware,
joint_state_broadcaster and forward command controllers from ``spawner``) and ``train.launch.py
use_sim:=false controller_manager:=/controller_manager sampler_params:=.../ros2_control.yaml``:

* ``so101``: joint *position* commands through forward_position_controller;
* ``ur5``: joint *velocity* commands through forward_velocity_controller (the mock integrates
  them into positions);
* ``ur5_trajectory``: the UR5 reset with ``reset_mode: trajectory``: the sampler switches from
  forward_velocity_controller to joint_trajectory_controller, sends one FollowJointTrajectory
  goal to the start pose, switches back (``/controller_manager/switch_controller``);
* ``inactive``: the SO-101 with its forward controller configured but not active: one clear line
  (``no trial: controller ... is inactive ...``), no trial, training stops with it.

Checks: trials and automatic resets (``reset_mode: move``) through the controllers, every reset
within tolerance and every trial at its condition's start pose, one command per joint.

Needs ROS 2 with ros2_control / ros2_controllers and the example-robot-data wheel (in the nodes'
and in ``ros2 launch``'s Python); skipped with the reason elsewhere."""
import os
import re
import shutil
import unittest

import pytest
import yaml

from launch_helpers import (check_resets, check_trials_start_at, read_metrics, require_robot_data,
                            require_ros, robot_config_dict, temp_dir)

SHARE = require_ros()
require_robot_data()
try:
    from ament_index_python.packages import get_package_share_directory

    get_package_share_directory("controller_manager")
    get_package_share_directory("forward_command_controller")
except Exception:  # noqa: BLE001
    pytest.skip("needs ros2_control and ros2_controllers (controller_manager, "
                "forward_command_controller)", allow_module_level=True)

import launch  # noqa: E402
import launch_testing  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

TMP = temp_dir("ros2_control")
PARAMS = os.path.join(SHARE, "config", "ros", "ros2_control.yaml")
#: case -> (robot, command interface, forward controller, start pose of condition 1, inactive,
#: reset mode)
CASES = {
    "so101": ("so101", "position", "forward_position_controller", [0.3, -0.4, 0.45, 0.8, 0.2],
              False, "move"),
    "ur5": ("ur5", "velocity", "forward_velocity_controller",
            [0.3, -1.4, 1.4, -1.57, -1.57, 0.2], False, "move"),
    "ur5_trajectory": ("ur5", "velocity", "forward_velocity_controller",
                       [0.3, -1.4, 1.4, -1.57, -1.57, 0.2], False, "trajectory"),
    "inactive": ("so101", "position", "forward_position_controller",
                 [0.3, -0.4, 0.45, 0.8, 0.2], True, "move"),
}
T = 20


def sampler_params(case: str) -> str:
    """config/ros/ros2_control.yaml with the case's reset mode."""
    d = yaml.safe_load(open(PARAMS))
    d["/**/sampler_node"]["ros__parameters"]["reset_mode"] = CASES[case][5]
    path = TMP / f"{case}_sampler.yaml"
    path.write_text(yaml.safe_dump(d))
    return str(path)


def config(case: str):
    robot, *_, start1, _, _ = CASES[case]
    d = robot_config_dict(robot, iterations=1, T=T)
    starts = [d["agent"]["start_joint_positions"], start1]
    for c, q in zip(d["agent"]["conditions"], starts):
        c["start_joint_positions"] = q
    path = TMP / f"{case}.yaml"
    path.write_text(yaml.safe_dump(d))
    return str(path), starts


@pytest.mark.launch_test
@launch_testing.parametrize("case", list(CASES))
def generate_test_description(case):
    path, starts = config(case)
    run = TMP / f"run_{case}"
    shutil.rmtree(run, ignore_errors=True)
    robot = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "ros2_control_mock.launch.py")),
        launch_arguments={"config": path, "inactive": str(CASES[case][4]).lower()}.items())
    train = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "train.launch.py")),
        launch_arguments={"config": path, "use_sim": "false",
                          "sampler_params": sampler_params(case),
                          "controller_manager": "/controller_manager",
                          "experiment_dir": str(run)}.items())
    return (launch.LaunchDescription([robot, train, launch_testing.actions.ReadyToTest()]),
            {"run": run, "starts": starts})


class TestRos2Control(unittest.TestCase):
    def test_training_ends(self, proc_info, proc_output, case):
        proc_info.assertWaitForShutdown(process="coordinator_node", timeout=300)
        if CASES[case][4]:
            proc_output.assertWaitFor(
                f"no trial: controller {CASES[case][2]} is inactive in /controller_manager",
                process="sampler_node", timeout=10)
            proc_output.assertWaitFor("training failed", process="coordinator_node", timeout=10)
        else:
            proc_output.assertWaitFor("training done: 1 iterations", process="coordinator_node",
                                      timeout=10)


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_trials_and_resets_through_the_controllers(self, proc_output, run, starts, case):
        _, mode, controller, _, inactive, reset_mode = CASES[case]
        text = "".join(o.text.decode() for o in proc_output if "sampler_node" in o.process_name)
        self.assertIn(f"{mode} commands on /{controller}/commands, state from fk", text)
        files = sorted((run / "trials").rglob("c*_*.npz")) if (run / "trials").exists() else []
        if inactive:
            self.assertEqual(files, [], "a trial ran with the controller inactive")
            lines = [ln for ln in text.splitlines() if "no trial:" in ln]
            self.assertTrue(lines and all("ros2 control switch_controllers --activate" in ln
                                          for ln in lines), lines)
            print(f"\ninactive controller: {lines[0].split('] ', 2)[-1]}")
            return
        resets = check_resets(self, text, 4)                    # 2 conditions x 2 trials
        through = re.findall(r"mrad \(joint_trajectory_controller, ([\d.]+) s trajectory\)", text)
        self.assertEqual(len(through), 4 if reset_mode == "trajectory" else 0, text[-2000:])
        rows = read_metrics(run)
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["discarded"], 0)
        self.assertEqual(len(files), 4)
        check_trials_start_at(self, files, starts, T)
        print(f"\n{case}: {len(files)} trials, resets {[e for _, _, e in resets]} mrad, "
              f"cost {rows[0]['cost']:.3f}")
