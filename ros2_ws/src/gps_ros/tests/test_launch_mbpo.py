"""launch_testing: a model-based learner over ROS: ``train.launch.py config:=<an mbpo config>``
trains through two samplers (the coordinator runs the learner, the samplers run its exported
actor with each trial's noise on the embedded simulators), 2 iterations complete with every trial
valid, and the metrics equal those of the same config trained in-process."""
import os
import unittest

import pytest
import yaml

from launch_helpers import in_process_metrics, read_metrics, require_ros, temp_dir

SHARE = require_ros()

import launch  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.asserts  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from conftest import small_config_dict  # noqa: E402

TMP = temp_dir("mbpo")
RUN = TMP / "run"


def _config() -> str:
    d = small_config_dict()
    d["iterations"] = 2
    d["agent"]["T"] = 20
    d["algorithm"] = {"type": "mbpo", "samples_per_condition": 1}
    d["model_based"] = {"members": 3, "elites": 2, "model_hidden": [32], "model_max_epochs": 5,
                        "hidden": [32, 32], "batch_size": 32, "utd": 2.0, "rollout_batch": 50,
                        "rollout_every": 20}
    path = TMP / "mbpo.yaml"
    path.write_text(yaml.safe_dump(d))
    return str(path)


CONFIG = _config()


@pytest.mark.launch_test
def generate_test_description():
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "train.launch.py")),
        launch_arguments={"config": CONFIG, "num_samplers": "2",
                          "experiment_dir": str(RUN)}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestMbpo(unittest.TestCase):
    def test_training_ends_the_launch(self, proc_info, proc_output):
        proc_info.assertWaitForShutdown(process="coordinator_node", timeout=600)
        proc_output.assertWaitFor("training done: 2 iterations", process="coordinator_node",
                                  timeout=10)


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

    def test_the_learner_trained_through_the_samplers(self):
        rows = read_metrics(RUN)
        self.assertEqual([r["iteration"] for r in rows], [1, 2])
        self.assertEqual([r["trials"] for r in rows], [2, 4])
        self.assertTrue(all(r["discarded"] == 0 for r in rows))
        self.assertTrue(all(len(r["eval_final_distance"]) == 2 for r in rows))
        self.assertEqual(len(list((RUN / "policy").glob("actor_*.pt"))), 3)

    def test_same_metrics_as_in_process(self):
        strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
        self.assertEqual(strip(read_metrics(RUN)), strip(in_process_metrics(CONFIG, TMP / "ref")))
