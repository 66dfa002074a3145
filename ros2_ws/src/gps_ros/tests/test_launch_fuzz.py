"""launch_testing: hostile messages to every interface of the train and deploy graphs.

The graphs: a sampler with its lockstep sim (``train.launch.py role:=samplers``), dynamics_node,
trajopt_node and trainer_node, and ``deploy.launch.py`` (a free-running sim + the policy, holding)
in ``/deploy``.  A seeded fuzzer sends a bounded number of malformed and adversarial messages to
each subscription, service and action: commands of the wrong size or with NaN, joint states with
foreign names and mismatched arrays, full states of the wrong size, camera frames whose sizes,
steps and encodings lie, RunTrial goals that the sampler's bounds refuse (other dimensions, wild
gains, 4e9 steps, bad noise factors), FitDynamics / OptimizeTrajectories / TrainPolicy requests
of the wrong shapes or with NaN.  Then: every node is still up (a valid trial runs), every
request was answered with a refusal that says why, the arms did not move, and every command our
nodes sent was a hold.  The counts are printed (-s)."""
import array
import os
import time
import unittest

import numpy as np
import pytest

from launch_helpers import (TopicProbe, constant_torque_policy, require_ros, temp_dir,
                            vision_config)

SHARE = require_ros()

import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import launch_testing  # noqa: E402
import rclpy  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from gps_ros.config import load_config  # noqa: E402
from gps_ros.ros import convert  # noqa: E402

TMP = temp_dir("fuzz")
CONFIG = vision_config(TMP / "vision.yaml")
CHECKPOINT = constant_torque_policy(TMP / "run", CONFIG, [1.0, 0, 0, 0, 0, 0, 0])
CFG = load_config(CONFIG)
T, M, N_JOINTS = CFG.agent.T, len(CFG.agent.conditions), 7
SEED = int(os.environ.get("GPS_ROS_FUZZ_SEED", "0"))
PER_TOPIC = int(os.environ.get("GPS_ROS_FUZZ_COUNT", "60"))     # messages per topic
PER_REQUEST = max(1, PER_TOPIC // 3)                              # requests / goals per server


@pytest.mark.launch_test
def generate_test_description():
    def include(name, **args):
        return launch.actions.IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", name)),
            launch_arguments={k: str(v) for k, v in args.items()}.items())

    learner = [launch_ros.actions.Node(package="gps_ros", executable=exe, name=exe, output="screen",
                                       parameters=[{"config": CONFIG}])
               for exe in ("dynamics_node", "trajopt_node", "trainer_node")]
    return launch.LaunchDescription([
        include("train.launch.py", config=CONFIG, role="samplers", sim_mode="lockstep",
                discovery="localhost", experiment_dir=str(TMP / "exp")),
        include("deploy.launch.py", checkpoint=CHECKPOINT, namespace="deploy",
                discovery="localhost"),
        *learner, launch_testing.actions.ReadyToTest()])


# --- hostile messages ------------------------------------------------------------------------------
def floats(rng, n):
    """n values, some of them NaN, inf or huge."""
    v = rng.standard_normal(n)
    for i in rng.integers(0, max(n, 1), size=min(n, 3)):
        v[i] = rng.choice([np.nan, np.inf, -np.inf, 1e308, -1e308])
    return array.array("d", v.tolist())


def bad_commands(rng, n):
    for i in range(n):
        m = Float64MultiArray()
        size = int(rng.choice([0, 1, N_JOINTS - 1, N_JOINTS + 1, 10_000])) if i % 2 else N_JOINTS
        m.data = floats(rng, size)
        if size == N_JOINTS and np.isfinite(m.data).all():
            m.data[0] = np.nan
        yield m


def bad_states(rng, n, dX):
    for _ in range(n):
        m = Float64MultiArray()
        m.data = floats(rng, int(rng.choice([0, 1, dX - 1, dX + 1, 5000])))
        yield m


def bad_joint_states(rng, n, names):
    for i in range(n):
        m = JointState()
        m.header.frame_id = "fuzz"
        kind = i % 4
        m.name = (list(names) if kind else [f"joint{j}" for j in range(len(names))])
        k = len(names) + (kind == 1) - (kind == 2)
        m.position = floats(rng, max(k, 0))
        m.velocity = floats(rng, int(rng.integers(0, 2 * len(names) + 2)))
        yield m


def bad_images(rng, n):
    for i in range(n):
        m = Image()
        m.height, m.width = int(rng.choice([0, 1, 64, 480, 2**31])), int(rng.choice([0, 3, 64, 2**31]))
        m.encoding = str(rng.choice(["rgb8", "bgr8", "mono16", "32FC1", "", "x" * 200]))
        m.step = int(rng.integers(0, 2**32))
        m.data = array.array("B", rng.integers(0, 255, size=int(rng.integers(0, 5000))).tolist())
        yield m


def bad_compressed(rng, n):
    for _ in range(n):
        m = CompressedImage()
        m.format = str(rng.choice(["jpeg", "png", "tiff", ""]))
        head = b"\x89PNG\r\n\x1a\n" if m.format == "png" else b"\xff\xd8\xff"
        m.data = array.array("B", head + rng.integers(0, 255, size=int(rng.integers(0, 4000)),
                                                       dtype=np.uint8).tobytes())
        yield m


def bad_goals(rng, n, dX, dU, Goal):
    """RunTrial goals the sampler's bounds refuse, one defect each."""
    from gps_ros.control.lin_gauss import LinearGaussianController as LGC

    defects = ["dims", "gain", "bias", "noise_std", "horizon", "condition", "source", "noise_size",
               "noise_nan", "policy_chol", "nan_gain", "sizes"]
    for i in range(n):
        defect = defects[i % len(defects)]
        t = T
        K = rng.uniform(-1, 1, (t, dU, dX))
        c = LGC(K, rng.uniform(-1, 1, (t, dU)), np.tile(np.eye(dU) * 0.01, (t, 1, 1)))
        noise = rng.standard_normal((t, dU))
        g = convert.run_trial_goal(Goal(), int(rng.integers(0, M)), t, noise, i, controller=c)
        if defect == "dims":
            c2 = LGC(rng.standard_normal((t, dU, dX + 3)), np.zeros((t, dU)),
                     np.tile(np.eye(dU), (t, 1, 1)))
            convert.controller_to_msg(c2, g.controller)
        elif defect == "gain":
            g.controller.gain = array.array("d", (np.asarray(g.controller.gain) * 1e9).tolist())
        elif defect == "bias":
            g.controller.bias = array.array("d", [1e12] * (t * dU))
        elif defect == "noise_std":
            g.controller.covariance_cholesky = array.array(
                "d", np.tile(np.eye(dU) * 1e6, (t, 1, 1)).ravel().tolist())
        elif defect == "horizon":
            g.horizon = 2**32 - 1
        elif defect == "condition":
            g.condition = int(rng.choice([M, 2**32 - 1]))
        elif defect == "source":
            g.source = int(rng.integers(2, 256))
        elif defect == "noise_size":
            g.noise = floats(rng, t * dU - 1)
        elif defect == "noise_nan":
            g.noise[3] = np.nan
        elif defect == "policy_chol":
            g.source, g.policy_checkpoint = Goal.SOURCE_POLICY, str(CHECKPOINT)
            g.policy_covariance_cholesky = floats(rng, dU * dU + 1)
        elif defect == "nan_gain":
            g.controller.gain[0] = np.nan
        else:
            g.controller.gain = floats(rng, 7)
        yield defect, g


def bad_trajectories(rng, n_trials, Trajectory):
    out = []
    for i in range(n_trials):
        m = Trajectory()
        m.condition = int(rng.choice([0, 1, M, 2**31]))
        m.horizon = int(rng.choice([T, T - 1, 0]))
        m.dx, m.du = int(rng.integers(0, 40)), int(rng.integers(0, 9))
        m.states = floats(rng, int(rng.integers(0, 200)))
        m.actions = floats(rng, int(rng.integers(0, 50)))
        if i % 3 == 0:
            m.image_paths = ["/dev/zero", "/etc/passwd"][: int(rng.integers(1, 3))]
        out.append(m)
    return out


class TestFuzz(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.probe = TopicProbe("fuzz_probe")
        cls.commands = {}
        for topic in ("/sampler_0/effort_controller/commands", "/deploy/effort_controller/commands"):
            cls.commands[topic] = []
            cls.probe.node.create_subscription(
                Float64MultiArray, topic, lambda m, t=topic: cls.commands[t].append(list(m.data)), 100)
        for topic in ("/sampler_0/joint_states", "/deploy/joint_states"):
            # the sims' own joint states (the fuzzer's carry frame_id "fuzz")
            cls.probe.node.create_subscription(
                JointState, topic, lambda m, t=topic: cls.genuine(t, m), 100)

    @classmethod
    def genuine(cls, topic, msg):
        if msg.header.frame_id != "fuzz":
            cls.probe.last[topic] = msg

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()
        rclpy.shutdown()

    def test_hostile_messages_are_refused_and_nothing_moves(self):
        from gps_msgs.action import RunTrial, TrainPolicy
        from gps_msgs.msg import LinearGaussianController, LinearGaussianDynamics, QuadraticCost
        from gps_msgs.msg import Trajectory
        from gps_msgs.srv import FitDynamics, OptimizeTrajectories, ResetCondition
        from rclpy.action import ActionClient

        from gps_ros.ros.clients import wait_future
        from gps_ros.task import TaskModel, build_initial_controllers

        p, node, rng = self.probe, self.probe.node, np.random.default_rng(SEED)
        task = TaskModel(CFG.agent)
        dX, dU = task.dX, task.dU
        run_trial = ActionClient(node, RunTrial, "/sampler_0/run_trial")
        train = ActionClient(node, TrainPolicy, "/train_policy")
        fit = node.create_client(FitDynamics, "/fit_dynamics")
        opt = node.create_client(OptimizeTrajectories, "/optimize_trajectories")
        reset = node.create_client(ResetCondition, "/sampler_0/reset")
        for what, ready in (("run_trial", lambda: run_trial.wait_for_server(timeout_sec=60)),
                            ("train_policy", lambda: train.wait_for_server(timeout_sec=60)),
                            ("fit_dynamics", lambda: fit.wait_for_service(timeout_sec=60)),
                            ("optimize", lambda: opt.wait_for_service(timeout_sec=60)),
                            ("reset", lambda: reset.wait_for_service(timeout_sec=60))):
            self.assertTrue(ready(), f"{what} is not up")
        deadline = time.monotonic() + 60
        while "/deploy/joint_states" not in p.last and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("/deploy/joint_states", p.last, "no joint state from the deploy sim")
        # the lockstep sim publishes a state only when it steps or resets: reset it once
        req = ResetCondition.Request()
        req.condition = 0
        self.assertTrue(wait_future(reset.call_async(req), 60.0, "reset").success)
        deadline = time.monotonic() + 30
        while "/sampler_0/joint_states" not in p.last and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("/sampler_0/joint_states", p.last, "no joint state from the lockstep sim")
        time.sleep(1.0)
        q_deploy0 = np.array(p.last["/deploy/joint_states"].position)
        q_train0 = np.array(p.last["/sampler_0/joint_states"].position)
        counts = {}

        # topics
        pubs = {
            "/sampler_0/effort_controller/commands": (Float64MultiArray, bad_commands(rng, PER_TOPIC)),
            "/deploy/effort_controller/commands": (Float64MultiArray, bad_commands(rng, PER_TOPIC)),
            "/sampler_0/gps_state": (Float64MultiArray, bad_states(rng, PER_TOPIC, dX)),
            "/sampler_0/joint_states": (JointState, bad_joint_states(rng, PER_TOPIC, task.joint_names)),
            "/deploy/joint_states": (JointState, bad_joint_states(rng, PER_TOPIC, task.joint_names)),
            "/deploy/camera/image_raw": (Image, bad_images(rng, PER_TOPIC)),
            "/sampler_0/camera/image_raw": (Image, bad_images(rng, PER_TOPIC)),
            "/deploy/camera/image_raw/compressed": (CompressedImage, bad_compressed(rng, PER_TOPIC)),
        }
        for topic, (msg_type, msgs) in pubs.items():
            qos = qos_profile_sensor_data if "camera" in topic else 10
            pub = node.create_publisher(msg_type, topic, qos)
            time.sleep(0.5)                                   # matched
            n = 0
            for m in msgs:
                pub.publish(m)
                n += 1
                time.sleep(0.005)
            counts[topic] = n

        # services and actions: each answer must be a refusal that says why
        def answer(future, what):
            return wait_future(future, 60.0, what)

        refused = 0
        for i in range(PER_REQUEST):
            req = ResetCondition.Request()
            req.condition = int(rng.choice([M, 2**32 - 1]))
            res = answer(reset.call_async(req), "reset")
            self.assertFalse(res.success)
            self.assertTrue(res.message)
            refused += 1
        counts["/sampler_0/reset"] = refused

        goal_defects = {}
        for defect, g in bad_goals(rng, PER_REQUEST, dX, dU, RunTrial.Goal):
            handle = answer(run_trial.send_goal_async(g), "send goal")
            if handle.accepted:
                res = answer(handle.get_result_async(), "trial")
                self.assertEqual(res.status, 6, f"{defect}: a bad goal ran (status {res.status})")
                self.assertIn("RunTrial goal refused", res.result.trajectory.reason, defect)
            goal_defects[defect] = goal_defects.get(defect, 0) + 1
        counts["/sampler_0/run_trial"] = sum(goal_defects.values())

        for i in range(PER_REQUEST):
            req = FitDynamics.Request()
            req.trajectories = bad_trajectories(rng, int(rng.integers(0, 5)), Trajectory)
            req.num_conditions = int(rng.choice([0, M, M + 1, 2**31]))
            res = answer(fit.call_async(req), "fit")
            self.assertFalse(res.success)
            self.assertTrue(res.message)
        counts["/fit_dynamics"] = PER_REQUEST

        for i in range(PER_REQUEST):
            req = OptimizeTrajectories.Request()
            k = int(rng.integers(0, 3))
            for _ in range(k):
                d = LinearGaussianDynamics(horizon=int(rng.choice([T, 2**31])), dx=dX, du=dU)
                d.fm, d.fv = floats(rng, 50), floats(rng, T * dX)
                d.dyn_covar, d.x0mu, d.x0sigma = floats(rng, 9), floats(rng, dX), floats(rng, 4)
                c = QuadraticCost(horizon=T, dxu=dX + dU)
                c.cm, c.cv, c.cc = floats(rng, 10), floats(rng, 10), floats(rng, T)
                req.dynamics.append(d)
                req.costs.append(c)
                req.previous.append(LinearGaussianController(horizon=T, dx=dX, du=dU))
            req.epsilon = floats(rng, k)
            req.eta0 = floats(rng, int(rng.integers(0, 3)))
            res = answer(opt.call_async(req), "optimize")
            self.assertFalse(res.success)
            self.assertTrue(res.message)
        counts["/optimize_trajectories"] = PER_REQUEST

        for i in range(PER_REQUEST):
            g = TrainPolicy.Goal()
            g.trajectories = bad_trajectories(rng, int(rng.integers(0, 4)), Trajectory)
            g.controllers = [LinearGaussianController(horizon=T, dx=dX, du=dU)] * int(rng.integers(0, 3))
            g.iteration, g.checkpoint_dir = i, str(TMP / "fuzz_ckpt")
            handle = answer(train.send_goal_async(g), "train goal")
            self.assertTrue(handle.accepted)
            res = answer(handle.get_result_async(), "train")
            self.assertFalse(res.result.success)
            self.assertTrue(res.result.message)
        counts["/train_policy"] = PER_REQUEST

        time.sleep(1.0)
        # nothing moved, every command our nodes sent was a hold (zero effort)
        q_deploy1 = np.array(p.last["/deploy/joint_states"].position)
        q_train1 = np.array(p.last["/sampler_0/joint_states"].position)
        self.assertLess(np.abs(q_deploy1 - q_deploy0).max(), 1e-3, "the deploy arm moved")
        self.assertLess(np.abs(q_train1 - q_train0).max(), 1e-3, "the training arm moved")
        sent = 0
        for topic, seen in self.commands.items():
            ours = [u for u in seen if len(u) == N_JOINTS and np.isfinite(u).all()]
            sent += len(ours)
            self.assertTrue(all(not np.any(u) for u in ours),
                            f"a non-hold command on {topic}: {[u for u in ours if np.any(u)][:1]}")

        # parameters as ROS users expect them: described, ranged, read-only unless live
        import subprocess
        from types import SimpleNamespace

        def ros2(*args):
            p = subprocess.run(["ros2", *args], capture_output=True, text=True, timeout=60)
            return SimpleNamespace(stdout=p.stdout + p.stderr)

        out = ros2("param", "describe", "/deploy/policy_node", "effort_scale", "rate_hz").stdout
        self.assertIn("fraction of the URDF effort limits", out)
        self.assertIn("Max value: 1.0", out)
        self.assertIn("Read only: true", out.split("Parameter name: rate_hz")[1])
        self.assertIn("read-only", ros2("param", "set", "/sampler_0/sampler_node", "rate_hz",
                                        "50.0").stdout)
        self.assertIn("out of range", ros2("param", "set", "/deploy/policy_node", "effort_scale",
                                           "3.0").stdout)
        self.assertIn("successful", ros2("param", "set", "/deploy/policy_node", "effort_scale",
                                         "0.5").stdout)

        # and everybody is still up: a valid trial runs on the sampler after all that
        ctrl = build_initial_controllers(CFG, task)[0]
        goal = convert.run_trial_goal(RunTrial.Goal(), 0, ctrl.T, None, 1, controller=ctrl)
        handle = answer(run_trial.send_goal_async(goal), "valid goal")
        self.assertTrue(handle.accepted)
        res = answer(handle.get_result_async(), "valid trial")
        X, U, meta, _ = convert.trial_from_msg(res.result.trajectory)
        self.assertEqual(X.shape, (T, dX))
        self.assertFalse(meta.discarded, meta.reason)
        total = sum(counts.values())
        print(f"\nfuzz (seed {SEED}): {total} hostile messages, "
              + ", ".join(f"{k} {v}" for k, v in counts.items())
              + f"; goal defects {goal_defects}; {sent} well-formed commands from our nodes, all "
                f"holds; max joint motion {np.abs(q_deploy1 - q_deploy0).max():.2e} (deploy), "
                f"{np.abs(q_train1 - q_train0).max():.2e} rad (training); a valid trial ran after")


@launch_testing.post_shutdown_test()
class TestAfter(unittest.TestCase):
    def test_no_node_crashed(self, proc_info):
        # every node was up to the end (stopped by the launch, not by an exception)
        for info in proc_info:
            self.assertIn(info.returncode, (0, -2, -15), f"{info.process_name} exited with "
                                                         f"{info.returncode}")
