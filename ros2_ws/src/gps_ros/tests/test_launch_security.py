"""launch_testing: the train and deploy graphs secured with SROS2 (``keystore:=``, Enforce).

A keystore from ``ros2 run gps_ros create_keystore`` (the shipped policy).  The secured graphs
work: training completes with the in-process metrics; the deploy graph holds, then drives the
arm once the operator enclave enables the policy.  Intruders get nothing moved: a participant
with no certificate, and one in the ``viewer`` enclave (a valid certificate without permission),
try to enable the policy, publish torques on the commands topic and start a trial.  Needs a ROS 2
build with sros2 and Cyclone DDS's security plugins; skips with the reason elsewhere.
"""
import json
import os
import subprocess
import sys
import textwrap
import time
import unittest

import numpy as np
import pytest

from launch_helpers import (constant_torque_policy, in_process_metrics, reach_config, read_metrics,
                            require_ros, temp_dir, vision_config)

SHARE = require_ros(cli=True)
if subprocess.run(["ros2", "security", "-h"], capture_output=True).returncode != 0:
    pytest.skip("sros2 is not installed (ros2 security)", allow_module_level=True)

import launch  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.asserts  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

TMP = temp_dir("security")
KEYSTORE = TMP / "keystore"


def make_keystore() -> None:
    """The keystore of the shipped policy, once (``ros2 run gps_ros create_keystore``)."""
    if KEYSTORE.is_dir():
        return
    made = subprocess.run(["ros2", "run", "gps_ros", "create_keystore", str(KEYSTORE)],
                          capture_output=True, text=True)
    assert made.returncode == 0, f"create_keystore failed: {made.stdout}{made.stderr}"
    print(made.stdout)


SECURE = {"ROS_SECURITY_KEYSTORE": str(KEYSTORE), "ROS_SECURITY_ENABLE": "true",
          "ROS_SECURITY_STRATEGY": "Enforce"}
TORQUE = [2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
REACH = reach_config(TMP / "reach.yaml", iterations=2)
CHECKPOINT = constant_torque_policy(TMP / "policy_run", vision_config(TMP / "vision.yaml"), TORQUE)

# an intruder process: what it can reach of the graph in 8 s (JSON on stdout)
INTRUDER = textwrap.dedent("""
    import json, sys, time
    import rclpy
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import SetBool, Trigger
    from rclpy.action import ActionClient
    from gps_msgs.action import RunTrial
    ns, out = sys.argv[1], {}
    rclpy.init()
    node = rclpy.create_node("viewer_intruder")   # a name the viewer enclave may serve under
    def attempt(what, fn):
        try:
            out[what] = fn()
        except Exception as err:
            out[what] = f"refused: {type(err).__name__}: {str(err)[:120]}"
    attempt("publisher", lambda: node.create_publisher(
        Float64MultiArray, f"{ns}/effort_controller/commands", 10) and "created")
    attempt("enable_client", lambda: node.create_client(SetBool, f"{ns}/policy_node/enable")
            and "created")
    attempt("trial_client", lambda: ActionClient(node, RunTrial, "/sampler_0/run_trial")
            and "created")
    attempt("continue_client", lambda: node.create_client(Trigger, "/coordinator_node/continue")
            and "created")
    pub = None
    try:
        pub = node.create_publisher(Float64MultiArray, f"{ns}/effort_controller/commands", 10)
    except Exception:
        pass
    cli = act = None
    try:
        cli = node.create_client(SetBool, f"{ns}/policy_node/enable")
    except Exception:
        pass
    try:
        act = ActionClient(node, RunTrial, "/sampler_0/run_trial")
    except Exception:
        pass
    go = None
    try:
        go = node.create_client(Trigger, "/coordinator_node/continue")
    except Exception:
        pass
    end, sent = time.monotonic() + 8.0, 0
    out["enable_service_seen"] = out["trial_server_seen"] = out["continue_service_seen"] = False
    while time.monotonic() < end:
        if pub is not None:
            m = Float64MultiArray(); m.data = [50.0, 50.0, 0.0, 0.0, 0.0, 0.0, 0.0]
            pub.publish(m); sent += 1
        if cli is not None and cli.service_is_ready():
            out["enable_service_seen"] = True
            fut = cli.call_async(SetBool.Request(data=True))
        if act is not None and act.server_is_ready():
            out["trial_server_seen"] = True
            act.send_goal_async(RunTrial.Goal())
        if go is not None and go.service_is_ready():
            out["continue_service_seen"] = True
            go.call_async(Trigger.Request())
        rclpy.spin_once(node, timeout_sec=0.01)
    out["commands_sent"] = sent
    out["peers"] = pub.get_subscription_count() if pub is not None else None
    print("RESULT " + json.dumps(out), flush=True)
""")


def intruders(ns: str) -> dict:
    """Run both intruders at once: ``nocert`` (security off: no certificate) and ``viewer`` (the
    viewer enclave: a certificate without the permission); what each reached."""
    procs = {}
    for kind in ("nocert", "viewer"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROS_SECURITY")}
        if kind == "viewer":
            env.update(SECURE, ROS_SECURITY_ENCLAVE_OVERRIDE="/gps_ros/viewer")
        procs[kind] = subprocess.Popen([sys.executable, "-c", INTRUDER, ns], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = {}
    for kind, p in procs.items():
        out = p.communicate(timeout=60)[0]
        line = [x for x in out.splitlines() if x.startswith("RESULT ")]
        assert line, f"intruder {kind} printed nothing: {out}"
        seen[kind] = json.loads(line[-1][7:])
    return seen


WATCHER = textwrap.dedent("""
    import json, sys, time
    import rclpy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    rclpy.init()
    node = rclpy.create_node("viewer")            # the viewer enclave serves under /*viewer*
    out = {"joint_states": 0, "q_first": None, "q_last": None, "commands": 0,
           "nonzero_commands": 0}
    def js(m):
        out["joint_states"] += 1
        out["q_first"] = out["q_first"] or list(m.position)
        out["q_last"] = list(m.position)
    def cmd(m):
        out["commands"] += 1
        out["nonzero_commands"] += any(m.data)
    node.create_subscription(JointState, "/deploy/joint_states", js, 10)
    node.create_subscription(Float64MultiArray, "/deploy/effort_controller/commands", cmd, 10)
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end or out["q_last"] is None and time.monotonic() < end + 60:
        rclpy.spin_once(node, timeout_sec=0.05)
    print("RESULT " + json.dumps(out), flush=True)
""")


class _Pending:
    def __init__(self, proc):
        self.proc = proc

    def result(self) -> dict:
        out = self.proc.communicate(timeout=120)[0]
        line = [x for x in out.splitlines() if x.startswith("RESULT ")]
        assert line, f"the watcher printed nothing: {out}"
        return json.loads(line[-1][7:])


def watch(seconds: float, wait: bool = True):
    """What the viewer enclave sees of the deploy graph for ``seconds`` (after its first joint
    state): joint positions first / last, commands and how many were not holds."""
    env = {**os.environ, **SECURE, "ROS_SECURITY_ENCLAVE_OVERRIDE": "/gps_ros/viewer"}
    p = _Pending(subprocess.Popen([sys.executable, "-c", WATCHER, str(seconds)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return p.result() if wait else p


def output_of(proc_output, name: str) -> str:
    """Everything the process whose name contains ``name`` printed so far."""
    return "".join(o.text.decode() for p in proc_output.processes()
                   if name in p.process_details["name"] for o in proc_output[p])


def operator(*args: str) -> subprocess.CompletedProcess:
    """A ros2 CLI command in the operator enclave."""
    env = {**os.environ, **SECURE, "ROS_SECURITY_ENCLAVE_OVERRIDE": "/gps_ros/operator"}
    return subprocess.run(["ros2", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.launch_test
@launch_testing.parametrize("graph", ["deploy", "train"])
def generate_test_description(graph):
    make_keystore()
    if graph == "deploy":
        args = {"checkpoint": str(CHECKPOINT), "namespace": "deploy"}
        name = "deploy.launch.py"
    else:
        args = {"config": REACH, "sim_mode": "lockstep", "experiment_dir": str(TMP / "run"),
                "prepare_conditions": "true"}
        name = "train.launch.py"
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", name)),
        launch_arguments={**args, "keystore": str(KEYSTORE)}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()]), {"graph": graph}


class TestSecured(unittest.TestCase):
    """Every secured participant of the test runs in a process of its own: Cyclone DDS takes one
    security configuration per process, and earlier launch tests in this pytest process made
    unsecured participants (a secured one here then crashes the process)."""

    def test_only_the_allowed_enclaves_act(self, graph, proc_info, proc_output):
        if graph == "train":
            return self._train(proc_info, proc_output)
        first = watch(3.0)                  # the viewer enclave reads the secured graph
        self.assertTrue(first["joint_states"], f"the viewer sees no joint_states: {first}")
        proc_output.assertWaitFor("holding until", timeout=1)
        # the intruders' 8 s, watched from the viewer enclave
        watcher = watch(10.0, wait=False)
        seen = intruders("/deploy")
        during = watcher.result()
        for kind, got in seen.items():
            self.assertFalse(got["enable_service_seen"], f"{kind} found /deploy/policy_node/enable")
            self.assertFalse(got["peers"], f"{kind}'s commands matched a subscriber: {got}")
        self.assertTrue(seen["viewer"]["publisher"].startswith("refused"), seen["viewer"])
        self.assertTrue(seen["viewer"]["enable_client"].startswith("refused"), seen["viewer"])
        moved = np.abs(np.subtract(during["q_last"], first["q_first"])).max()
        self.assertLess(moved, 1e-3, f"the arm moved: {during}")
        self.assertTrue(during["commands"] and not during["nonzero_commands"],
                        f"the policy is not holding: {during}")
        # the operator may: enable, and the arm moves under the policy's torque
        call = operator("service", "call", "/deploy/policy_node/enable", "std_srvs/srv/SetBool",
                        "{data: true}")
        self.assertIn("success=True", call.stdout, call.stdout + call.stderr)
        after = watch(2.0)
        drive = after["q_last"][0] - during["q_last"][0]
        self.assertGreater(abs(drive), 0.01, f"the operator's enable did not drive the arm: {after}")
        print(f"\nsecured deploy: intruders {seen}; arm within {moved:.1e} rad, "
              f"{during['commands']} commands of the policy all holds; after the operator's "
              f"enable joint 1 moved {drive:+.3f} rad")

    def _train(self, proc_info, proc_output):
        # the coordinator waits for the operator before condition 0: the intruders' turn
        proc_output.assertWaitFor("OPERATOR: prepare condition 0", process="coordinator_node",
                                  timeout=120)
        seen = intruders("/sampler_0")          # torques for the lockstep sim of sampler_0
        for kind, got in seen.items():
            self.assertFalse(got["trial_server_seen"], f"{kind} found /sampler_0/run_trial")
            self.assertFalse(got["peers"], f"{kind}'s commands matched the sim: {got}")
            self.assertFalse(got["continue_service_seen"], f"{kind} found the continue service")
        self.assertTrue(seen["viewer"]["trial_client"].startswith("refused"), seen["viewer"])
        self.assertTrue(seen["viewer"]["continue_client"].startswith("refused"), seen["viewer"])
        self.assertNotIn("confirmed", output_of(proc_output, "coordinator_node"),
                         "an intruder confirmed a condition")
        trials = list((TMP / "run" / "trials").rglob("*.npz"))
        self.assertEqual(trials, [], f"a trial ran before the operator confirmed: {trials}")
        # the operator confirms each condition (2 iterations x 2 conditions: 4 set-ups); the
        # secured graph trains to the end
        for i in range(4):
            deadline = time.monotonic() + 120
            while (output_of(proc_output, "coordinator_node").count("OPERATOR: prepare") <= i
                   and time.monotonic() < deadline):
                time.sleep(0.2)
            res = operator("service", "call", "/coordinator_node/continue", "std_srvs/srv/Trigger")
            self.assertIn("success=True", res.stdout, res.stdout + res.stderr)
        proc_info.assertWaitForShutdown(process="coordinator_node", timeout=300)
        proc_output.assertWaitFor("training done: 2 iterations", process="coordinator_node",
                                  timeout=10)
        print(f"\nsecured training: intruders {seen}; the operator confirmed 4 conditions")


@launch_testing.post_shutdown_test()
class TestAfter(unittest.TestCase):
    def test_clean_exit_and_the_in_process_metrics(self, graph, proc_info, proc_output):
        for proc in proc_info.processes():
            text = "".join(o.text.decode() for o in proc_output[proc])
            self.assertNotIn("Traceback", text, proc.process_details["name"])
        if graph != "train":
            return
        launch_testing.asserts.assertExitCodes(proc_info)
        ros = read_metrics(TMP / "run")
        ref = in_process_metrics(REACH, TMP / "run_in_process")
        self.assertEqual(len(ros), 2)
        for a, b in zip(ros, ref):
            self.assertEqual(a["trials"], b["trials"])          # no trial but the coordinator's
            self.assertAlmostEqual(a["cost"], b["cost"], places=6)
