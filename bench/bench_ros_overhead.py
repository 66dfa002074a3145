"""Wall time of a GPS iteration over ROS 2 against the same run in-process.

  source install/setup.bash   # a ROS 2 Jazzy with the colcon-built workspace
  python bench/bench_ros_overhead.py [--iterations 5] [--modes embedded lockstep]

The CI-sized reach task (T = 40, 2 conditions x 3 trials, 2 samplers over ROS), the same seed:
``gps_ros.train.train`` in this process, then ``ros2 launch gps_ros train.launch.py`` once per
simulation mode (``embedded``: each sampler steps its own PyBullet arm; ``lockstep``: a sim_node
per sampler, one command / state message pair per control step).  Per iteration it prints the
algorithm's own stage times (sample, dynamics, LQR, total; iteration 1 left out as warm-up) and the
ratio to in-process, plus the whole launch's wall time (process start-up included).
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros2_ws" / "src" / "gps_ros"))


def task(iterations: int) -> dict:
    return {
        "name": "bench_reach", "seed": 0, "iterations": iterations,
        "agent": {"T": 40, "conditions": [{"target": [0.55, 0.15, 0.35]},
                                          {"target": [0.45, -0.15, 0.5]}]},
        "cost": {"ee": [{"ramp": "quadratic", "l2": 10.0, "l1": 1.0, "alpha": 1e-4}]},
        "init_controller": {"init_var": 2.0},
        "algorithm": {"samples_per_condition": 3},
        "dynamics": {"prior": {"max_samples": 6}},
    }


def summary(rows) -> dict:
    rows = rows[1:] if len(rows) > 1 else rows
    t = {k: float(np.mean([r["time"][k] for r in rows])) for k in ("sample", "dynamics", "lqr", "total")}
    t["cost"] = rows[-1]["cost"]
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--modes", nargs="+", default=["embedded", "lockstep"])
    ap.add_argument("--samplers", type=int, default=2)
    args = ap.parse_args()
    from gps_ros.config import load_config
    from gps_ros.experiment import Experiment
    from gps_ros.train import train

    if shutil.which("ros2") is None:
        print("ros2 is not on PATH: source a ROS 2 install and the workspace first", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="gps_ros_bench_"))
    cfg_path = tmp / "reach.yaml"
    cfg_path.write_text(yaml.safe_dump(task(args.iterations)))
    t0 = time.perf_counter()
    train(load_config(str(cfg_path)), tmp / "in_process", progress=False)
    wall_ref = time.perf_counter() - t0
    ref = summary(Experiment.open(tmp / "in_process").read_metrics())
    print(f"reach task T=40, 2 conditions x 3 trials, {args.iterations} iterations "
          "(per-iteration means over iterations 2..N, seconds)")
    print(f"{'route':28s} {'sample':>8s} {'dynamics':>9s} {'lqr':>7s} {'total':>7s} {'x in-proc':>9s} "
          f"{'wall':>7s} {'cost':>9s}")
    line = "{:28s} {sample:8.3f} {dynamics:9.3f} {lqr:7.3f} {total:7.3f} {ratio:9.2f} {wall:7.1f} {cost:9.3f}"
    print(line.format("in-process", ratio=1.0, wall=wall_ref, **ref))
    for mode in args.modes:
        run = tmp / f"ros_{mode}"
        t0 = time.perf_counter()
        proc = subprocess.run(["ros2", "launch", "gps_ros", "train.launch.py", f"config:={cfg_path}",
                               f"num_samplers:={args.samplers}", f"sim_mode:={mode}",
                               f"experiment_dir:={run}"], capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
            print(f"ros2 launch ({mode}) failed with exit code {proc.returncode}", file=sys.stderr)
            return 1
        s = summary(Experiment.open(run).read_metrics())
        print(line.format(f"ROS 2, {args.samplers} samplers, {mode}", ratio=s["total"] / ref["total"],
                          wall=wall, **s))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
