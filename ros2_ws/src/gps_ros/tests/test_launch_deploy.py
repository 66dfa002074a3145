"""launch_testing: ``deploy.launch.py checkpoint:=RUN/policy.pt`` as the README writes it -- the
sim takes the run's config (the camera the vision policy needs), the policy holds until
``/policy_node/enable``, then drives the arm; the e-stop topic stops it."""
import os
import time
import unittest

import numpy as np
import pytest

from launch_helpers import (TopicProbe, constant_torque_policy, require_ros, temp_dir,
                            vision_config)

SHARE = require_ros()

import launch  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, Float64MultiArray  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

TMP = temp_dir("deploy")
TORQUE = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
CHECKPOINT = constant_torque_policy(TMP / "run", vision_config(TMP / "vision.yaml"), TORQUE)


@pytest.mark.launch_test
def generate_test_description():
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "deploy.launch.py")),
        launch_arguments={"checkpoint": str(CHECKPOINT)}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestDeploy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.probe = TopicProbe("deploy_probe")
        cls.probe.listen(JointState, "/joint_states")
        cls.probe.listen(Float64MultiArray, "/effort_controller/commands")

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()
        rclpy.shutdown()

    def q(self):
        return np.array(self.probe.last["/joint_states"].position)

    def test_enable_drives_the_arm_and_e_stop_holds_it(self):
        p = self.probe
        self.assertTrue(p.wait_for("/joint_states", 5, timeout=60), "no joint_states from sim_node")
        self.assertTrue(p.wait_for("/effort_controller/commands", 5, timeout=60),
                        "policy_node sends no commands")
        q0 = self.q()
        time.sleep(1.0)
        self.assertLess(np.abs(self.q() - q0).max(), 1e-3, "the arm moved before enable")
        self.assertTrue(all(v == 0.0 for v in p.last["/effort_controller/commands"].data))
        res = p.call(SetBool, "/policy_node/enable", SetBool.Request(data=True))
        self.assertTrue(res.success)
        time.sleep(0.5)
        u = np.array(p.last["/effort_controller/commands"].data)
        np.testing.assert_allclose(u, TORQUE, atol=1e-4)
        time.sleep(1.0)
        # (held longer, the constant torque swings joint 1 to its soft position limit, where the
        # safety filter zeroes the outward command)
        self.assertGreater(abs(self.q()[0] - q0[0]), 0.05, "the policy did not move joint 1")
        pub = p.node.create_publisher(Bool, "/e_stop", 10)
        for _ in range(10):
            pub.publish(Bool(data=True))
            time.sleep(0.1)
        time.sleep(0.5)
        self.assertTrue(all(v == 0.0 for v in p.last["/effort_controller/commands"].data),
                        "commands after e-stop are not the hold command")


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_clean_exit(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
