"""Wall time of one GPS (LQR-FLM) iteration by stage, on the default Panda reach task.

    python bench/bench_iteration.py [--iterations 5] [--config ros2_ws/src/gps_ros/config/panda_reach.yaml]

Runs the real training loop in a temporary experiment directory and prints the median and max
seconds per stage over the iterations (4 conditions x 5 trials each with the shipped config).
Target: one 4x5-trial iteration <= 10 s on 2 cores.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from gps_ros.config import load_config
from gps_ros.train import train

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "ros2_ws/src/gps_ros/config/panda_reach.yaml"))
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = load_config(args.config)
    cfg.seed = args.seed
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = train(cfg, Path(tmp) / "run", iterations=args.iterations, progress=False)
        wall = time.perf_counter() - t0
        rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    M = len(cfg.agent.conditions)
    N = cfg.algorithm.samples_per_condition
    print(f"config {Path(args.config).name}: {M} conditions x {N} trials, T={cfg.agent.T}, "
          f"{args.iterations} iterations, BLAS threads={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}")
    print(f"{'stage':<12}{'median s':>10}{'max s':>10}")
    for k in ("sample", "dynamics", "cost", "step_size", "lqr", "total"):
        v = np.array([r["time"][k] for r in rows])
        print(f"{k:<12}{np.median(v):>10.3f}{v.max():>10.3f}")
    print(f"whole run incl. writing artefacts and plots: {wall:.1f} s "
          f"({wall / args.iterations:.2f} s per iteration)")


if __name__ == "__main__":
    main()
