"""Joint rate of sampler_node and policy_node on a real ROS 2 graph.

  source install/setup.bash   # a ROS 2 Jazzy with the colcon-built workspace
  python bench/bench_ros_rate.py [--seconds 60] [--rate 500]

A publisher process sends sensor_msgs/JointState at 1 kHz (and a 64x64 camera frame at 30 Hz);
sampler_node runs free (``lockstep: false``, ``rate_hz`` 500, state from joint_states) for
``--seconds`` of trials of a linear-Gaussian controller (dX = 14, dU = 7), then a few seconds of the
visuomotor CNN policy (TorchScript, 64x64); policy_node runs the CNN on every 2nd joint state.
Figures from the trial's own step stamps: achieved rate, p99 / max deviation of the period from
1/rate, overruns (periods longer than 1.5 periods), and the node's own overrun count; first the
same figures for a bare Python loop doing nothing (the machine's floor: on a VM whose vCPU is
preempted every ~100 ms for 3-5 ms no Python loop does better).
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros2_ws" / "src" / "gps_ros"))

JOINTS = [f"panda_joint{i}" for i in range(1, 8)]


def publisher(rate_hz: float, seconds: float) -> None:
    """1 kHz joint states (a slow sine, so the state changes) + 30 Hz camera frames."""
    import rclpy
    from sensor_msgs.msg import Image, JointState

    from gps_ros.ros import convert
    from gps_ros.safety import RateKeeper

    import signal

    from rclpy.signals import SignalHandlerOptions

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)     # stop between publishes
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    node = rclpy.create_node("bench_joint_states")
    js_pub = node.create_publisher(JointState, "joint_states", 10)
    img_pub = node.create_publisher(Image, "camera/image_raw", 10)
    msg = JointState(name=JOINTS)
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    rate = RateKeeper(rate_hz)
    end = time.monotonic() + seconds
    k = 0
    base = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
    try:
        while time.monotonic() < end:
            rate.sleep()
            t = time.monotonic()
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.position = (base + 0.01 * np.sin(t)).tolist()
            msg.velocity = [0.01 * np.cos(t)] * 7
            js_pub.publish(msg)
            k += 1
            if k % int(rate_hz / 30) == 0:
                img_pub.publish(convert.image_to_msg(img, Image(), msg.header.stamp))
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def stats(stamps, rate_hz: float) -> str:
    """Figures of one stamp sequence, or of several trials' (periods within each trial)."""
    runs = stamps if isinstance(stamps, list) else [stamps]
    period = 1.0 / rate_hz
    d = np.concatenate([np.diff(s) for s in runs])
    achieved = len(d) / d.sum()
    dev = np.abs(d - period) * 1e3
    over = int((d > 1.5 * period).sum())
    return (f"{achieved:8.1f} Hz  p50 {np.percentile(dev, 50):.3f} ms  p99 {np.percentile(dev, 99):.3f} ms"
            f"  max {dev.max():.2f} ms  overruns {over} of {len(d)} periods")


def machine_floor(rate_hz: float, seconds: float = 10.0) -> str:
    """The same figures for a bare RateKeeper loop doing nothing (no ROS, no work): what this
    machine's scheduler allows any Python loop, before the sampler adds anything."""
    from gps_ros.safety import RateKeeper

    rate, stamps = RateKeeper(rate_hz), []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rate.sleep()
        stamps.append(time.monotonic())
    return stats(np.array(stamps), rate_hz)


def run_goal(node, client, goal, timeout):
    from gps_ros.ros.clients import wait_future

    last_fb = {}
    handle = wait_future(client.send_goal_async(
        goal, feedback_callback=lambda m: last_fb.update(o=m.feedback.overruns)), 30.0, "goal")
    if not handle.accepted:
        raise RuntimeError("goal rejected")
    res = wait_future(handle.get_result_async(), timeout, "result").result
    stamps = np.array([s.sec + 1e-9 * s.nanosec for s in res.trajectory.stamps])
    return res, stamps, last_fb.get("o", 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of linear-Gaussian trials")
    ap.add_argument("--rate", type=float, default=500.0, help="sampler rate_hz")
    ap.add_argument("--cnn-seconds", type=float, default=5.0)
    ap.add_argument("--priority", type=int, default=0,
                    help="sampler_node realtime_priority (SCHED_FIFO; 0: normal scheduling)")
    args = ap.parse_args()
    if args.publisher:
        publisher(1000.0, args.seconds)
        return 0
    import rclpy
    from gps_msgs.action import RunTrial
    from rclpy.action import ActionClient
    from std_msgs.msg import Float64MultiArray

    from gps_ros.control import LinearGaussianController
    from gps_ros.ros import convert

    print(f"machine floor, bare loop at {args.rate:g} Hz, idle:           {machine_floor(args.rate)}")
    tmp = Path(tempfile.mkdtemp(prefix="gps_ros_rate_"))
    total = args.seconds + args.cnn_seconds + 60
    procs = [subprocess.Popen([sys.executable, __file__, "--publisher", "--seconds", str(total)])]
    sampler_args = ["-p", f"rate_hz:={args.rate}", "-p", "lockstep:=false",
                    "-p", "state_source:=joint_states", "-p", "reset_service:=''",
                    "-p", "settle_time:=0.0", "-p", "min_motion:=0.0", "-p", "stale_periods:=10.0",
                    "-p", f"realtime_priority:={args.priority}"]
    procs.append(subprocess.Popen([sys.executable, "-m", "gps_ros.ros.sampler_node", "--ros-args",
                                   *sampler_args]))
    rclpy.init()
    node = rclpy.create_node("bench_rate_driver")
    spin = threading.Thread(target=rclpy.spin, args=(node,), daemon=True)
    spin.start()
    try:
        client = ActionClient(node, RunTrial, "run_trial")
        if not client.wait_for_server(timeout_sec=60):
            print("sampler_node did not come up", file=sys.stderr)
            return 1
        time.sleep(2.0)
        print(f"machine floor, bare loop, with the 1 kHz publisher running: "
              f"{machine_floor(args.rate)}")
        print(f"sampler_node, lockstep false, rate_hz {args.rate:g}, 1 kHz joint_states, "
              f"realtime_priority {args.priority}")
        T = int(round(10.0 * args.rate))                       # 10 s trials
        rng = np.random.default_rng(0)
        ctrl = LinearGaussianController(0.01 * rng.standard_normal((T, 7, 14)), np.zeros((T, 7)),
                                        np.broadcast_to(1e-4 * np.eye(7), (T, 7, 7)).copy())
        all_stamps, node_over = [], 0
        for i in range(max(1, int(round(args.seconds / 10.0)))):
            goal = convert.run_trial_goal(RunTrial.Goal(), 0, T, None, i, controller=ctrl)
            res, stamps, over = run_goal(node, client, goal, 60.0)
            if res.trajectory.discarded:
                print(f"  trial {i} discarded: {res.trajectory.reason}")
            all_stamps.append(stamps)
            node_over += over
            print(f"  LG trial {i}: {stats(stamps, args.rate)}")
        print(f"linear-Gaussian, {sum(len(s) for s in all_stamps)} steps: "
              f"{stats(all_stamps, args.rate)} (node counted {node_over})")

        from types import SimpleNamespace

        from gps_ros.config import load_config
        from gps_ros.policy.export import export_torchscript
        from gps_ros.task import StateLayout
        from gps_ros.train import build_policy

        cfg = load_config(str(Path(__file__).resolve().parents[1] / "ros2_ws/src/gps_ros/config/panda_vision.yaml"))
        lay = StateLayout.for_points(len(cfg.agent.ee_points), 7)
        policy, _ = build_policy(cfg, SimpleNamespace(layout=lay, dU=7, dX=lay.dX))
        export = export_torchscript(policy.trainer.net, tmp / "policy.pt")
        Tc = int(round(args.cnn_seconds * args.rate))
        goal = convert.run_trial_goal(RunTrial.Goal(), 0, Tc, None, 0, policy_checkpoint=str(export),
                                      policy_chol=1e-3 * np.eye(7))
        res, stamps, over = run_goal(node, client, goal, 120.0)
        print(f"CNN policy in sampler_node, {len(stamps)} steps: {stats(stamps, args.rate)} "
              f"(node counted {over})")

        pol = subprocess.Popen([sys.executable, "-m", "gps_ros.ros.policy_node", "--ros-args",
                                "-p", f"checkpoint:={export}", "-p", "decimation:=2",
                                "-p", "enabled:=true", "-p", "rate_hz:=500.0",
                                "-p", "stale_periods:=10.0"])
        procs.append(pol)
        arrivals = []
        node.create_subscription(Float64MultiArray, "effort_controller/commands",
                                 lambda m: arrivals.append(time.monotonic()), 100)
        time.sleep(8.0)
        arrivals.clear()
        time.sleep(10.0)
        a = np.array(arrivals)
        if len(a) > 2:
            print(f"policy_node (CNN, decimation 2 of 1 kHz), commands received: {stats(a, 500.0)}")
        else:
            print("policy_node sent no commands")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
