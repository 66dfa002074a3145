"""launch_testing: ``train.launch.py`` on robots other than the Panda, in their own command
interfaces: the SO-101 (joint position commands) in both simulation modes and the UR5 (joint
velocity commands) in lockstep -- CI-sized configs written from the shipped ``so101_reach.yaml`` /
``ur5_reach.yaml`` (2 targets, T = 20, 2 trials per condition, 2 iterations).  Only ``config:=``
names the robot: the launch ends by itself, every process exits 0 without a traceback, the
sampler commands the robot's forward controller, and the metrics equal the in-process
``gps-ros train`` of the same config and seed.

Needs ROS 2 and the example-robot-data wheel (the UR5's and SO-101's URDFs); skipped with the
reason elsewhere.
"""
import os
import unittest

import pytest

from launch_helpers import (in_process_metrics, read_metrics, require_robot_data, require_ros,
                            robot_config, temp_dir)

SHARE = require_ros()
require_robot_data()

import launch  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.asserts  # noqa: E402
import launch_testing.markers  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

TMP = temp_dir("robot_train")
CONFIGS = {robot: robot_config(TMP / f"{robot}.yaml", robot, iterations=2)
           for robot in ("so101", "ur5")}
#: the forward controller each robot's command interface is taken by (gps_ros.robot.actuation)
CONTROLLER = {"so101": "forward_position_controller", "ur5": "forward_velocity_controller"}


@pytest.mark.launch_test
@launch_testing.parametrize("sim_mode,robot", [("embedded", "so101"), ("lockstep", "so101"),
                                               ("lockstep", "ur5")])
def generate_test_description(sim_mode, robot):
    run = TMP / f"run_{sim_mode}_{robot}"
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "train.launch.py")),
        launch_arguments={"config": CONFIGS[robot], "num_samplers": "2", "sim_mode": sim_mode,
                          "experiment_dir": str(run)}.items())
    return (launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()]),
            {"run": run, "config": CONFIGS[robot], "robot": robot, "sim_mode": sim_mode})


class TestTraining(unittest.TestCase):
    def test_training_ends_the_launch(self, proc_info, proc_output):
        proc_info.assertWaitForShutdown(process="coordinator_node", timeout=600)
        proc_output.assertWaitFor("training done: 2 iterations", process="coordinator_node",
                                  timeout=10)


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info, proc_output):
        launch_testing.asserts.assertExitCodes(proc_info)
        for proc in proc_info.processes():
            text = "".join(o.text.decode() for o in proc_output[proc])
            self.assertNotIn("Traceback", text, proc.process_details["name"])

    def test_samplers_command_the_robots_controller(self, proc_output, run, robot):
        from gps_ros.sample import Trajectories

        mode, n = {"so101": ("position", 5), "ur5": ("velocity", 6)}[robot]
        text = "".join(o.text.decode() for o in proc_output if "sampler_node" in o.process_name)
        for i in (0, 1):
            self.assertIn(f"{mode} commands on /sampler_{i}/{CONTROLLER[robot]}/commands", text)
        files = sorted((run / "trials").rglob("c*_*.npz"))
        self.assertEqual(len(files), 8)                 # 2 iterations x 2 conditions x 2 trials
        for f in files:
            tr = Trajectories.load(f)
            self.assertEqual(tr.U.shape, (1, 20, n), f)  # one command per joint, T = 20

    def test_metrics_equal_the_in_process_run(self, run, config):
        ros = read_metrics(run)
        ref = in_process_metrics(config, run.parent / f"{run.name}_in_process")
        self.assertEqual(len(ros), 2)
        self.assertEqual(len(ref), 2)
        for a, b in zip(ros, ref):
            self.assertEqual(a["trials"], b["trials"])
            self.assertEqual(a["discarded"], 0)
            self.assertAlmostEqual(a["cost"], b["cost"], places=6)
            self.assertEqual(len(a["final_distance"]), 2)
            for x, y in zip(a["final_distance"], b["final_distance"]):
                self.assertAlmostEqual(x, y, places=8)
