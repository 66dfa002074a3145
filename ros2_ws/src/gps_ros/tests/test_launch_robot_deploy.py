"""launch_testing: ``deploy.launch.py checkpoint:=RUN/policy.pt`` on robots other than the Panda,
in their own command interfaces: the SO-101 (joint positions) and the UR5 (joint velocities).  The
policy is a blind network of the run's config whose output is a constant command
(:func:`launch_helpers.constant_policy`); the sim takes the run's config.yaml.  Checks: the
commands reach the robot's forward controller (``forward_position_controller`` /
``forward_velocity_controller``) with one value per joint of that robot; before
``/policy_node/enable`` they are the hold (position: where the arm is; velocity: zero) and the arm
stays put; enabled, they are the policy's constant command and the arm follows; the e-stop holds
it again.

Needs ROS 2 and the example-robot-data wheel; skipped with the reason elsewhere."""
import os
import time
import unittest

import numpy as np
import pytest
import yaml

from launch_helpers import (TopicProbe, constant_policy, require_robot_data, require_ros,
                            robot_config_dict, temp_dir)

SHARE = require_ros()
require_robot_data()

import launch  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, Float64MultiArray  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

TMP = temp_dir("robot_deploy")
#: robot -> (command interface, its forward controller, the policy's constant command)
ROBOTS = {
    # a joint position target 0.3 rad round the first joint from the start pose
    "so101": ("position", "forward_position_controller", [0.3, -0.6, 0.6, 0.9, 0.0]),
    # 0.2 rad/s round the first joint
    "ur5": ("velocity", "forward_velocity_controller", [0.2, 0.0, 0.0, 0.0, 0.0, 0.0]),
}


def checkpoint(robot: str):
    d = robot_config_dict(robot)
    d["policy"] = {"use_image": False, "hidden": [16]}    # blind: no camera needed
    config = TMP / f"{robot}.yaml"
    config.write_text(yaml.safe_dump(d))
    return constant_policy(TMP / f"run_{robot}", str(config), ROBOTS[robot][2])


@pytest.mark.launch_test
@launch_testing.parametrize("robot", list(ROBOTS))
def generate_test_description(robot):
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "deploy.launch.py")),
        launch_arguments={"checkpoint": str(checkpoint(robot))}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestDeploy(unittest.TestCase):
    def test_hold_then_policy_then_e_stop(self, robot):
        mode, controller, command = ROBOTS[robot]
        topic = f"/{controller}/commands"
        rclpy.init()
        p = TopicProbe(f"deploy_probe_{robot}")
        try:
            p.listen(JointState, "/joint_states")
            p.listen(Float64MultiArray, topic)
            q = lambda: np.array(p.last["/joint_states"].position)  # noqa: E731
            u = lambda: np.array(p.last[topic].data)                # noqa: E731
            self.assertTrue(p.wait_for("/joint_states", 5, timeout=60), "no joint_states from sim_node")
            self.assertTrue(p.wait_for(topic, 5, timeout=60), f"policy_node sends nothing on {topic}")
            self.assertEqual(len(p.last["/joint_states"].name), len(command))
            self.assertEqual(u().shape, (len(command),), "one command per joint of the robot")
            # disabled: the hold of the interface, and the arm stays where it is
            q0 = q()
            time.sleep(1.0)
            self.assertLess(np.abs(q() - q0).max(), 1e-3, "the arm moved before enable")
            hold = q0 if mode == "position" else np.zeros(len(command))
            np.testing.assert_allclose(u(), hold, atol=1e-3, err_msg="not the hold before enable")
            res = p.call(SetBool, "/policy_node/enable", SetBool.Request(data=True))
            self.assertTrue(res.success)
            time.sleep(1.0)
            np.testing.assert_allclose(u(), command, atol=1e-4, err_msg="not the policy's command")
            moved = q()[0] - q0[0]
            if mode == "position":
                self.assertAlmostEqual(q()[0], command[0], delta=0.02, msg="joint 1 not at the target")
            else:
                self.assertGreater(moved, 0.05, "the policy did not turn joint 1")
            pub = p.node.create_publisher(Bool, "/e_stop", 10)
            for _ in range(10):
                pub.publish(Bool(data=True))
                time.sleep(0.1)
            time.sleep(0.5)
            q1 = q()
            hold = q1 if mode == "position" else np.zeros(len(command))
            np.testing.assert_allclose(u(), hold, atol=2e-3, err_msg="not the hold after e-stop")
            time.sleep(0.5)
            self.assertLess(np.abs(q() - q1).max(), 2e-3, "the arm moved after the e-stop")
        finally:
            p.close()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_clean_exit(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
