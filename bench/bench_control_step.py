"""Control-step latency without ROS: the body of one sampler / policy_node step.

  python bench/bench_control_step.py [--steps 20000] [--no-policy]

Measures with time.perf_counter_ns, one thread (OPENBLAS / torch threads = 1):
  1. safety filter alone (7 joints, effort mode)
  2. linear-Gaussian controller act (dX = 32, dU = 7) + safety filter
  3. + message packing of the command (array.array, what rclpy gets)
  4. CNN policy step (TorchScript export of gps_ros.policy's VisuomotorPolicy, one 64x64 RGB frame)
     + safety filter, if torch is installed
and prints p50 / p99 / max against the 2 ms budget of a 500 Hz loop.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros2_ws" / "src" / "gps_ros"))

import numpy as np  # noqa: E402

from gps_ros.control import LinearGaussianController  # noqa: E402
from gps_ros.ros import convert  # noqa: E402
from gps_ros.config import load_config  # noqa: E402
from gps_ros.paths import default_config_path  # noqa: E402
from gps_ros.safety import JointStateSample, SafetyFilter  # noqa: E402
from gps_ros.task import robot_description  # noqa: E402

BUDGET_US = 2000.0  # 500 Hz


def measure(fn, steps: int, warmup: int = 200) -> np.ndarray:
    for i in range(warmup):
        fn(i)
    out = np.empty(steps, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(steps):
        t0 = clock()
        fn(i)
        out[i] = clock() - t0
    return out / 1e3  # microseconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--no-policy", action="store_true")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    T, dX, dU = 100, 32, 7
    A = rng.standard_normal((T, dU, dU)) * 0.1
    ctrl = LinearGaussianController(rng.standard_normal((T, dU, dX)), rng.standard_normal((T, dU)),
                                    A @ np.swapaxes(A, -1, -2) + np.eye(dU))
    limits = robot_description(load_config(default_config_path()).agent).limits()   # the simulated Panda
    filt = SafetyFilter(limits, mode="effort", control_period=0.002, stale_periods=3)
    xs = rng.standard_normal((1024, dX)) * 0.1
    xs[:, :7] = 0.5 * (limits.lower + limits.upper)           # inside the position limits
    noise = rng.standard_normal((1024, dU))
    states = [JointStateSample(x[:7].copy(), x[7:14].copy(), 0.0) for x in xs]

    def safety_only(i):
        filt.filter(noise[i & 1023], states[i & 1023], 0.001)

    def lingauss(i):
        j = i & 1023
        u = ctrl.act(i % T, xs[j], noise[j])
        filt.filter(u, states[j], 0.001)

    def lingauss_pack(i):
        j = i & 1023
        u, _ = filt.filter(ctrl.act(i % T, xs[j], noise[j]), states[j], 0.001)
        convert.pack(u)

    rows = [("safety filter (7 joints)", measure(safety_only, args.steps)),
            ("lin-Gauss act (dX=32, dU=7) + safety", measure(lingauss, args.steps)),
            ("  + pack command (array.array)", measure(lingauss_pack, args.steps))]

    if not args.no_policy:
        try:
            import torch
        except ImportError:
            torch = None
            print("torch not installed: skipping the CNN policy step")
        if torch is not None:
            torch.set_num_threads(1)
            from gps_ros.policy.export import export_torchscript
            from gps_ros.policy.network import NetworkConfig, VisuomotorPolicy
            from gps_ros.ros.trial import TorchScriptPolicyActor

            net = VisuomotorPolicy(NetworkConfig(image_size=(64, 64), joint_dim=14, action_dim=7))
            with tempfile.TemporaryDirectory() as d:
                path = export_torchscript(net, Path(d) / "policy.pt")
                actor = TorchScriptPolicyActor(str(path), np.arange(14), num_threads=1)
            imgs = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)

            def policy_step(i):
                j = i & 1023
                u = actor.act(0, xs[j], None, image=imgs[i & 7])
                filt.filter(np.clip(u, -1e3, 1e3), states[j], 0.001)

            n = max(2000, args.steps // 4)
            rows.append(("CNN policy (TorchScript, 64x64, 1 thread) + safety",
                         measure(policy_step, n, warmup=50)))

    print(f"\ncontrol step latency, {args.steps} steps, budget {BUDGET_US:.0f} us (500 Hz)\n")
    print(f"{'step body':54s} {'p50 us':>8s} {'p99 us':>8s} {'max us':>9s} {'p99/budget':>10s}")
    for name, us in rows:
        p50, p99, mx = np.percentile(us, 50), np.percentile(us, 99), us.max()
        print(f"{name:54s} {p50:8.1f} {p99:8.1f} {mx:9.1f} {100 * p99 / BUDGET_US:9.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
