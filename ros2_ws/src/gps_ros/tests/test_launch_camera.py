"""launch_testing: a vision policy deployed on a real camera's stream.  The sim stands in for a
robot with a 640x480 camera (``config/ros/camera_640x480.yaml``: bgr8 on camera/image_raw, JPEG on
camera/image_raw/compressed, frames rendered in their own thread and arriving late, as from a
driver); policy_node takes either transport through the training config's image pipeline (centred
480x480 crop, area resize to the network's size).  Fresh frames: it acts.  Frames older than
``max_image_age``: it holds and counts them."""
import os
import time
import unittest

import numpy as np
import pytest
import yaml

from launch_helpers import (TopicProbe, constant_torque_policy, require_ros, temp_dir,
                            vision_config)

SHARE = require_ros()

import launch  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402

TMP = temp_dir("camera")
TORQUE = [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
CHECKPOINT = constant_torque_policy(TMP / "run", vision_config(TMP / "vision.yaml"), TORQUE)
CAMERA = os.path.join(SHARE, "config", "ros", "camera_640x480.yaml")


def stale_params() -> str:
    """The 640x480 camera, but a policy_node that accepts only 10 ms old frames (all are older)."""
    d = yaml.safe_load(open(CAMERA))
    d["/**/policy_node"]["ros__parameters"]["max_image_age"] = 0.01
    path = TMP / "camera_stale.yaml"
    path.write_text(yaml.safe_dump(d))
    return str(path)


@pytest.mark.launch_test
@launch_testing.parametrize("transport,fresh", [("raw", True), ("compressed", True),
                                                ("raw", False)])
def generate_test_description(transport, fresh):
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "deploy.launch.py")),
        launch_arguments={"checkpoint": str(CHECKPOINT), "image_transport": transport,
                          "sim_params": CAMERA if fresh else stale_params(),
                          "overlay": str(transport == "compressed").lower()}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestCameraDeploy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.probe = TopicProbe("camera_probe")
        cls.probe.listen(Image, "/camera/image_raw", qos_profile_sensor_data)
        cls.probe.listen(CompressedImage, "/camera/image_raw/compressed", qos_profile_sensor_data)
        cls.probe.listen(Float64MultiArray, "/effort_controller/commands")
        cls.probe.listen(Image, "/policy_node/overlay", qos_profile_sensor_data)

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()
        rclpy.shutdown()

    def test_policy_acts_on_fresh_frames_and_holds_on_stale_ones(self, proc_output, fresh,
                                                                 transport):
        p = self.probe
        self.assertTrue(p.wait_for("/camera/image_raw", 3, timeout=60), "no raw camera stream")
        self.assertTrue(p.wait_for("/camera/image_raw/compressed", 3, timeout=30),
                        "no compressed camera stream")
        raw, comp = p.last["/camera/image_raw"], p.last["/camera/image_raw/compressed"]
        self.assertEqual((raw.width, raw.height, raw.encoding), (640, 480, "bgr8"))
        self.assertEqual(comp.format, "jpeg")
        self.assertEqual(bytes(comp.data[:2]), b"\xff\xd8")          # a JPEG
        self.assertTrue(p.wait_for("/effort_controller/commands", 5, timeout=60))
        res = p.call(SetBool, "/policy_node/enable", SetBool.Request(data=True))
        self.assertTrue(res.success)
        time.sleep(2.0)
        got = []
        for _ in range(20):
            got.append(np.array(p.last["/effort_controller/commands"].data))
            time.sleep(0.05)
        got = np.array(got)
        if fresh:
            # the frames arrive 0.1-0.65 s late; within the 1 s the stand-in allows, it acts
            acting = np.all(np.abs(got - TORQUE) < 1e-4, axis=1).mean()
            self.assertGreater(acting, 0.9, got)
            if transport == "compressed":      # overlay:=true: the 32x32 frame x4 + points
                self.assertTrue(p.wait_for("/policy_node/overlay", 2, timeout=10))
                ov = p.last["/policy_node/overlay"]
                self.assertEqual((ov.width, ov.height, ov.encoding), (128, 128, "rgb8"))
                img = np.frombuffer(bytes(ov.data), np.uint8).reshape(128, 128, 3)
                up = img[::4, ::4]               # nearest-neighbour upscale: blocks of 4x4
                drawn = np.any(img != np.repeat(np.repeat(up, 4, 0), 4, 1), axis=2).sum()
                self.assertGreater(drawn, 20, "no feature points drawn")
        else:
            self.assertTrue(np.all(got == 0.0), "commands sent from stale frames")
            proc_output.assertWaitFor("older than the joint state", process="policy_node",
                                      timeout=10)


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_clean_exit(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
