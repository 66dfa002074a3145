"""Camera pipeline cost: a 640x480 frame of the vision scene in each transport -> the 64x64 network
input (decode, crop, area resize, colour order), per frame, one thread.

    python bench/bench_camera_pipeline.py [--frames 300] [--size 640x480]

The held-out success of a policy seen through the pipeline is `gps-ros eval --camera ...`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from gps_ros.agents.sim import build_sim
from gps_ros.config import load_config
from gps_ros.image_pipeline import ImagePipeline, encode_compressed, encode_raw
from gps_ros.sim.camera import Camera

CONFIG = Path(__file__).resolve().parents[1] / "ros2_ws/src/gps_ros/config/panda_vision.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="640x480")
    a = ap.parse_args()
    W, H = (int(v) for v in a.size.split("x"))
    cfg = load_config(CONFIG)
    sim, cam = build_sim(cfg.agent)
    big = Camera(cam.cfg, width=W, height=H)
    rng = np.random.default_rng(0)
    frames = []
    t0 = time.perf_counter()
    for k in range(8):                       # a few distinct scenes, cycled
        sim.reset(k % len(cfg.agent.conditions))
        sim.pose_scene(np.asarray(cfg.agent.start_joint_positions) + rng.uniform(-0.3, 0.3, 7),
                       sim.target)
        frames.append(big.render(sim))
    render_ms = (time.perf_counter() - t0) / len(frames) * 1e3
    sim.close()
    pipe = ImagePipeline.from_camera(cfg.agent.camera)
    print(f"{W}x{H} -> {pipe.width}x{pipe.height}, crop {pipe.crop_box(W, H)}, "
          f"{a.frames} frames per transport (rendering one {W}x{H} frame: {render_ms:.0f} ms)")
    print(f"{'transport':<10} {'bytes/frame':>12} {'p50 ms':>8} {'p99 ms':>8} {'frames/s':>9}")
    for tr in ("rgb8", "bgr8", "bgra8", "mono8", "jpeg", "png"):
        if tr in ("jpeg", "png"):
            data = [encode_compressed(f, tr, 90) for f in frames]
            run = lambda d: pipe.from_compressed(d, tr)  # noqa: E731
        else:
            data = [encode_raw(f, tr).tobytes() for f in frames]
            run = lambda d: pipe.from_raw(d, W, H, tr)  # noqa: E731
        times = np.empty(a.frames)
        for i in range(a.frames):
            t = time.perf_counter()
            run(data[i % len(data)])
            times[i] = time.perf_counter() - t
        print(f"{tr:<10} {np.mean([len(d) for d in data]):>12.0f} {np.percentile(times, 50) * 1e3:>8.2f} "
              f"{np.percentile(times, 99) * 1e3:>8.2f} {1 / times.mean():>9.0f}")


if __name__ == "__main__":
    main()
