"""launch_testing: visuomotor MDGPS over ROS with an experiment_dir (the samplers write the camera
frames to disk and send their paths; the trainer_node must read them): ``train.launch.py`` starts
the trainer by itself for an MDGPS config, 2 iterations complete, the policy is exported, and the
run exports again with ``gps-ros export``."""
import os
import unittest

import pytest

from launch_helpers import read_metrics, require_ros, temp_dir, vision_config

SHARE = require_ros()

import launch  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.asserts  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

TMP = temp_dir("mdgps")
CONFIG = vision_config(TMP / "vision.yaml", iterations=2)
RUN = TMP / "run"


@pytest.mark.launch_test
def generate_test_description():
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "train.launch.py")),
        launch_arguments={"config": CONFIG, "num_samplers": "2",
                          "experiment_dir": str(RUN)}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestMdgps(unittest.TestCase):
    def test_training_ends_the_launch(self, proc_info, proc_output):
        proc_info.assertWaitForShutdown(process="coordinator_node", timeout=900)
        proc_output.assertWaitFor("training done: 2 iterations", process="coordinator_node",
                                  timeout=10)


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

    def test_policy_trained_on_images_from_disk(self):
        rows = read_metrics(RUN)
        self.assertEqual([r["iteration"] for r in rows], [1, 2])
        self.assertTrue(all(r["discarded"] == 0 for r in rows))
        self.assertTrue(list((RUN / "trials" / "images").glob("*.npz")))
        self.assertTrue((RUN / "policy" / "policy_0002.pt").is_file())

    def test_gps_ros_export_of_the_ros_run(self):
        from gps_ros.evaluate import export_policy

        path, err = export_policy(RUN, TMP / "exported.pt")
        self.assertTrue(path.is_file())
        self.assertLess(err, 1e-4)
