"""ROS 2 integration tests: run only where rclpy and the built gps_msgs are available
(``colcon test`` on a ROS machine, see .github/workflows/ros2.yml)."""
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
gps_msgs = pytest.importorskip("gps_msgs")

from rclpy.executors import MultiThreadedExecutor  # noqa: E402

from gps_ros.ros import convert  # noqa: E402


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def spin(nodes):
    ex = MultiThreadedExecutor()
    for n in nodes:
        ex.add_node(n)
    t = threading.Thread(target=ex.spin, daemon=True)
    t.start()
    return ex


def test_generated_messages_round_trip(ros):
    from gps_msgs.action import RunTrial
    from gps_msgs.msg import LinearGaussianController, Trajectory

    from gps_ros.control import LinearGaussianController as LGC
    from gps_ros.sample import TrialMeta

    rng = np.random.default_rng(0)
    c = LGC(rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2)), np.broadcast_to(np.eye(2), (3, 2, 2)))
    msg = convert.controller_to_msg(c, LinearGaussianController())
    np.testing.assert_array_equal(convert.controller_from_msg(msg).K, c.K)
    goal = convert.run_trial_goal(RunTrial.Goal(), 0, 3, np.zeros((3, 2)), 5, controller=c)
    assert goal.source == RunTrial.Goal.SOURCE_CONTROLLER
    types = convert.ros_types()
    t = convert.trial_to_msg(np.zeros((3, 4)), np.ones((3, 2)), TrialMeta(1, seed=3), Trajectory(), types,
                             stamps=[0.0, 0.1, 0.2], images=np.zeros((3, 2, 2, 3), np.uint8))
    X, U, meta, imgs = convert.trial_from_msg(t)
    assert meta.seed == 3 and imgs.shape == (3, 2, 2, 3)


def test_sim_and_sampler_run_a_trial(ros):
    """sim_node + sampler_node (default config, lockstep) in one process: a RunTrial goal comes
    back with T recorded steps."""
    from gps_msgs.action import RunTrial
    from rclpy.action import ActionClient
    from rclpy.node import Node

    from gps_ros.ros import sampler_node, sim_node
    from gps_ros.ros.clients import wait_future
    from gps_ros.task import build_initial_controllers

    sim = sim_node.SimNode()
    sampler = sampler_node.SamplerNode()
    client_node = Node("test_client")
    ex = spin([sim, sampler, client_node])
    try:
        ctrl = build_initial_controllers(sampler.cfg, sim.sim.task)[0]
        client = ActionClient(client_node, RunTrial, "run_trial")
        assert client.wait_for_server(timeout_sec=10.0)
        goal = convert.run_trial_goal(RunTrial.Goal(), 0, ctrl.T, None, 1, controller=ctrl)
        handle = wait_future(client.send_goal_async(goal), 10.0, "send")
        assert handle.accepted
        res = wait_future(handle.get_result_async(), 120.0, "result").result
        X, U, meta, _ = convert.trial_from_msg(res.trajectory)
        assert X.shape == (ctrl.T, sim.sim.dX) and not meta.discarded, meta.reason
    finally:
        ex.shutdown()
        for n in (sim, sampler, client_node):
            n.destroy_node()


def test_e_stop_topic_latches(ros):
    from rclpy.node import Node
    from std_msgs.msg import Bool, Float64MultiArray

    from gps_ros.ros import sampler_node

    sampler = sampler_node.SamplerNode()
    pub_node = Node("estop_pub")
    got = []
    pub_node.create_subscription(Float64MultiArray, "effort_controller/commands",
                                 lambda m: got.append(list(m.data)), 10)
    pub = pub_node.create_publisher(Bool, "e_stop", 10)
    ex = spin([sampler, pub_node])
    try:
        deadline = time.monotonic() + 10.0
        while not sampler.safety.e_stopped and time.monotonic() < deadline:
            pub.publish(Bool(data=True))
            time.sleep(0.1)
        assert sampler.safety.e_stopped
        time.sleep(0.3)
        assert got and all(v == 0.0 for v in got[-1])
    finally:
        ex.shutdown()
        sampler.destroy_node()
        pub_node.destroy_node()


def test_launch_files_load():
    """Each launch file builds its LaunchDescription (launch_ros API check)."""
    import importlib.util
    from pathlib import Path

    from launch import LaunchDescription

    for f in sorted((Path(__file__).resolve().parents[1] / "launch").glob("*.launch.py")):
        spec = importlib.util.spec_from_file_location(f.stem.replace(".", "_"), f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        assert isinstance(mod.generate_launch_description(), LaunchDescription)
