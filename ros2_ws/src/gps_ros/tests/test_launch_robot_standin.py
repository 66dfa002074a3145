"""launch_testing: the hardware rehearsal on robots other than the Panda -- ``sim.launch.py`` (the
config's robot, free-running, topics only) standing in for the robot and its forward controller,
and ``train.launch.py use_sim:=false sampler_params:=.../robot_standin.yaml`` training on it with
automatic resets (``reset_mode: move``) to a start pose that differs per condition:

* ``so101``: joint *position* commands (the reset moves send position targets through the
  filter), the URDF from the config file;
* ``ur5_topic``: joint *velocity* commands, and the training config says
  ``agent.robot.urdf: robot_description``: the robot's side runs robot_state_publisher with the
  URDF, and the samplers and the coordinator build the robot model from that topic.

Checks: the run completes its iteration with no trial discarded, every reset ends within
tolerance and every trial starts at its condition's start pose, the trials' commands have one value
per joint of the robot, the samplers command the robot's forward controller, and (topic) the
model was built from ``/robot_description`` by the samplers and the coordinator.

Needs ROS 2 and the example-robot-data wheel; skipped with the reason elsewhere."""
import os
import unittest

import pytest
import yaml

from launch_helpers import (check_resets, check_trials_start_at, read_metrics, require_robot_data,
                            require_ros, robot_config_dict, temp_dir)

SHARE = require_ros()
require_robot_data()

import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import launch_testing  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

TMP = temp_dir("robot_standin")
STANDIN = os.path.join(SHARE, "config", "ros", "robot_standin.yaml")
#: case -> (shipped robot, URDF of the training config from the topic, command interface,
#: its forward controller, the start pose of condition 1; condition 0 keeps the shipped one)
CASES = {
    "so101": ("so101", False, "position", "forward_position_controller",
              [0.3, -0.4, 0.45, 0.8, 0.2]),
    "ur5_topic": ("ur5", True, "velocity", "forward_velocity_controller",
                  [0.3, -1.4, 1.4, -1.57, -1.57, 0.2]),
}
T = 20


def configs(case: str):
    """(the stand-in's config, the training's config, start poses per condition)."""
    robot, from_topic, *_, start1 = CASES[case]
    d = robot_config_dict(robot, iterations=1, T=T)
    starts = [d["agent"]["start_joint_positions"], start1]
    for c, q in zip(d["agent"]["conditions"], starts):
        c["start_joint_positions"] = q
    sim = TMP / f"{case}_robot.yaml"
    sim.write_text(yaml.safe_dump(d))
    if from_topic:
        d["agent"]["robot"]["urdf"] = "robot_description"
    train = TMP / f"{case}_train.yaml"
    train.write_text(yaml.safe_dump(d))
    return str(sim), str(train), starts


def urdf_text(config: str) -> str:
    from gps_ros.config import load_config
    from gps_ros.task import robot_description

    return robot_description(load_config(config).agent).urdf


@pytest.mark.launch_test
@launch_testing.parametrize("case", list(CASES))
def generate_test_description(case):
    sim_config, train_config, starts = configs(case)
    run = TMP / f"run_{case}"
    robot_side = [launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "sim.launch.py")),
        launch_arguments={"config": sim_config, "lockstep": "false"}.items())]
    if CASES[case][1]:
        # the robot's driver publishes its URDF (transient local) on /robot_description
        robot_side.append(launch_ros.actions.Node(
            package="robot_state_publisher", executable="robot_state_publisher",
            parameters=[{"robot_description": urdf_text(sim_config)}]))
    robot = launch.actions.GroupAction(robot_side, scoped=True, forwarding=False)
    train = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "train.launch.py")),
        launch_arguments={"config": train_config, "use_sim": "false", "sampler_params": STANDIN,
                          "experiment_dir": str(run)}.items())
    return (launch.LaunchDescription([robot, train, launch_testing.actions.ReadyToTest()]),
            {"run": run, "starts": starts})


class TestStandIn(unittest.TestCase):
    def test_training_ends(self, proc_info, proc_output):
        proc_info.assertWaitForShutdown(process="coordinator_node", timeout=300)
        proc_output.assertWaitFor("training done: 1 iterations", process="coordinator_node",
                                  timeout=10)


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        for proc in proc_info.processes():
            self.assertEqual(proc_info[proc].returncode, 0, proc.process_details["name"])

    def test_resets_and_commands_in_the_robots_interface(self, proc_output, case):
        _, from_topic, mode, controller, _ = CASES[case]
        text = "".join(o.text.decode() for o in proc_output if "sampler_node" in o.process_name)
        self.assertIn(f"{mode} commands on /{controller}/commands, state from fk", text)
        check_resets(self, text, 4)                             # 2 conditions x 2 trials
        coordinator = "".join(o.text.decode() for o in proc_output
                              if "coordinator_node" in o.process_name)
        for who, out in (("sampler_node", text), ("coordinator_node", coordinator)):
            self.assertEqual("robot model from the URDF on /robot_description" in out, from_topic,
                             who)

    def test_trials_start_at_their_start_pose(self, run, starts):
        rows = read_metrics(run)
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["discarded"], 0)
        files = sorted((run / "trials").rglob("c*_*.npz"))
        self.assertEqual(len(files), 4)
        check_trials_start_at(self, files, starts, T)
