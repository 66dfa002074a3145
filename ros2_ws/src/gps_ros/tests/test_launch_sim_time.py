"""launch_testing: ``sim.launch.py use_sim_time:=true`` -- the free-running sim publishes /clock
and joint_states stamped with it (its timer runs on the steady clock: on its own simulated clock it
never fired, since /clock only advanced when that very timer published it), and the arm's TF
(robot_state_publisher beside it)."""
import os
import time
import unittest

import pytest

from launch_helpers import TopicProbe, reach_config, require_ros, temp_dir

SHARE = require_ros()

import launch  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

CONFIG = reach_config(temp_dir("simtime") / "reach.yaml")


@pytest.mark.launch_test
def generate_test_description():
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "sim.launch.py")),
        launch_arguments={"config": CONFIG, "use_sim_time": "true"}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestSimTime(unittest.TestCase):
    def test_clock_and_joint_states_advance(self):
        rclpy.init()
        probe = TopicProbe("sim_time_probe")
        try:
            probe.listen(Clock, "/clock")
            probe.listen(JointState, "/joint_states")
            self.assertTrue(probe.wait_for("/clock", 10, timeout=60), "no /clock")
            self.assertTrue(probe.wait_for("/joint_states", 10, timeout=30), "no joint_states")
            c0 = probe.last["/clock"].clock
            time.sleep(1.0)
            c1 = probe.last["/clock"].clock
            dt = (c1.sec - c0.sec) + 1e-9 * (c1.nanosec - c0.nanosec)
            self.assertGreater(dt, 0.5, "simulated time does not advance")
            stamp = probe.last["/joint_states"].header.stamp
            self.assertLess(abs((stamp.sec + 1e-9 * stamp.nanosec)
                                - (c1.sec + 1e-9 * c1.nanosec)), 1.0, "not stamped with sim time")
            # TF of the arm's moving joints from robot_state_publisher
            probe.listen(TFMessage, "/tf")
            self.assertTrue(probe.wait_for("/tf", 3, timeout=30), "no /tf")
            frames = {t.child_frame_id for t in probe.last["/tf"].transforms}
            self.assertTrue({f"panda_link{i}" for i in range(1, 8)} <= frames, frames)
        finally:
            probe.close()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_clean_exit(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
