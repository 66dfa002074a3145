"""Frames/s of the camera renderers (gps_ros.sim.camera) on the Panda reaching scene, or on any
config's robot.

    OPENBLAS_NUM_THREADS=1 python bench/bench_camera.py --frames 300
    OPENBLAS_NUM_THREADS=1 python bench/bench_camera.py --scene peg --sizes 64
    OPENBLAS_NUM_THREADS=1 python bench/bench_camera.py --robot iiwa --sizes 64

``--robot CONFIG``: the reaching scene (table, object at condition 0's target) of a config's robot:
a config file, or the name of a shipped one (``ros2_ws/src/gps_ros/config/<name>.yaml`` or
``<name>_reach.yaml``: ``panda``, ``iiwa``, ``ur5``, ``so101``), arm poses around its start pose
(sigma 0.3 rad, within the joint limits).  The camera is the config's ``agent.camera`` view if it
has one, else the default view; ``--eye``/``--target`` override it.  Robots without a capsule file
get capsules fitted to their collision geometry (gps_ros.robot.capsules): the count and the
fitting time are printed first.

``--scene peg``: the peg-insertion scene (config/panda_peg.yaml with a camera: the peg on the
hand, the block with the hole at condition 0's target, the peg task's table), arm poses around its
start pose (sigma 0.1 rad, the peg stays above the table).

For each renderer and size: the arm is moved to a new random pose before every frame (pose set
outside the timed region), one ``Camera.render`` is timed; prints frames/s (frames / total time)
and p50/p99 ms per frame.  Renderers: ``fast`` (numpy capsule ray caster), ``tiny`` (PyBullet
TinyRenderer on the full meshes), and with ``--egl`` PyBullet's eglRenderer plugin
(``ER_BULLET_HARDWARE_OPENGL``; needs libEGL, here Mesa llvmpipe on the CPU).  ``--save DIR``
writes one example PNG per renderer and size.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pybullet as p

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ros2_ws", "src", "gps_ros"))

from gps_ros.config import load_config, parse_config  # noqa: E402
from gps_ros.sim.camera import Camera  # noqa: E402
from gps_ros.sim.arm import ArmSim, SceneConfig  # noqa: E402

CFG = {
    "name": "bench_camera",
    "agent": {"T": 40, "conditions": [{"target": [0.55, 0.15, 0.35]}, {"target": [0.45, -0.15, 0.5]}]},
}


def _egl_render(cam: Camera, sim: ArmSim) -> np.ndarray:
    out = p.getCameraImage(cam.width, cam.height, cam.view_matrix, cam.projection_matrix,
                           renderer=p.ER_BULLET_HARDWARE_OPENGL, physicsClientId=sim.physics_client)
    return np.asarray(out[2], dtype=np.uint8).reshape(cam.height, cam.width, 4)[:, :, :3]


CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "ros2_ws", "src", "gps_ros", "config")


def config_path(spec: str) -> str:
    """A config file, or the shipped config ``<spec>.yaml`` / ``<spec>_reach.yaml``."""
    for cand in (spec, os.path.join(CONFIG_DIR, spec), os.path.join(CONFIG_DIR, spec + ".yaml"),
                 os.path.join(CONFIG_DIR, spec + "_reach.yaml")):
        if os.path.isfile(cand):
            return cand
    raise SystemExit(f"--robot {spec}: no such config (a file, or one of {CONFIG_DIR}/*.yaml)")


def bench(name: str, render, sim: ArmSim, poses: np.ndarray) -> dict:
    render()  # warm-up
    times = np.empty(len(poses))
    for i, q in enumerate(poses):
        sim.pose_scene(q, sim.target)  # the controlled joints (held ones stay), the object stays
        t0 = time.perf_counter()
        render()
        times[i] = time.perf_counter() - t0
    ms = times * 1e3
    return {"name": name, "fps": len(times) / times.sum(), "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300, help="timed frames per renderer and size")
    ap.add_argument("--tiny-frames", type=int, default=None,
                    help="frames for the slow renderers (tiny, egl); default: min(frames, 100)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--renderers", nargs="+", default=["fast", "tiny"], choices=["fast", "tiny"])
    ap.add_argument("--egl", action="store_true", help="also time PyBullet's eglRenderer plugin")
    ap.add_argument("--save", default=None, help="directory for example PNGs")
    ap.add_argument("--scene", default="reach", choices=["reach", "peg"])
    ap.add_argument("--robot", default=None, metavar="CONFIG",
                    help="the reach scene of this config's robot (a file or a shipped config's name)")
    ap.add_argument("--eye", type=float, nargs=3, default=None, help="camera position (with --robot)")
    ap.add_argument("--target", type=float, nargs=3, default=None, help="camera look-at point (with --robot)")
    args = ap.parse_args(argv)

    view = {}
    if args.robot is not None:
        if args.scene != "reach":
            raise SystemExit("--robot benches the reach scene; leave --scene out")
        cfg = load_config(config_path(args.robot))
        sim = ArmSim(cfg.agent, scene=SceneConfig())
        sigma = 0.3
        if cfg.agent.camera is not None:
            view = {"eye": tuple(cfg.agent.camera.eye), "target": tuple(cfg.agent.camera.target)}
        if args.eye is not None:
            view["eye"] = tuple(args.eye)
        if args.target is not None:
            view["target"] = tuple(args.target)
    elif args.scene == "peg":
        from gps_ros.agents.sim import build_sim

        cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "ros2_ws", "src", "gps_ros",
                                       "config", "panda_peg.yaml"), ["agent.camera={}"])
        sim = build_sim(cfg.agent)[0]
        sigma = 0.1
    else:
        cfg = parse_config(CFG, "bench")
        sim = ArmSim(cfg.agent, scene=SceneConfig())
        sigma = 0.3
    sim.reset(0)
    t0 = time.perf_counter()
    caps = sim.capsules  # fitted to the collision geometry on first use where there is no file
    from gps_ros.robot.capsules import capsule_file

    src = "file" if capsule_file(sim.description) is not None else "fitted"
    print(f"robot {sim.description.source}: {len(caps.capsules)} capsules ({src}, "
          f"{time.perf_counter() - t0:.2f} s), radius_scale {caps.radius_scale}")
    rng = np.random.default_rng(0)
    q0 = np.asarray(cfg.agent.start_joint_positions)
    lo, hi = sim.joint_lower, sim.joint_upper
    slow_n = args.tiny_frames or min(args.frames, 100)
    egl_ok = False
    if args.egl:
        try:
            import pkgutil

            loader = pkgutil.get_loader("eglRenderer")
            egl_ok = loader is not None and p.loadPlugin(
                loader.get_filename(), "_eglRendererPlugin", physicsClientId=sim.physics_client) >= 0
        except Exception as e:  # noqa: BLE001
            print(f"eglRenderer plugin unavailable: {e}")
        if not egl_ok:
            print("eglRenderer plugin could not be loaded; skipping it")

    print(f"{'renderer':<8} {'size':>8} {'frames':>6} {'frames/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for size in args.sizes:
        runs = []
        for r in args.renderers:
            cam = Camera(width=size, height=size, renderer=r, **view)
            runs.append((r, cam, lambda cam=cam: cam.render(sim)))
        if egl_ok:
            cam = Camera(width=size, height=size, **view)
            runs.append(("egl", cam, lambda cam=cam: _egl_render(cam, sim)))
        for name, cam, fn in runs:
            n = args.frames if name == "fast" else slow_n
            poses = np.clip(q0 + rng.normal(0.0, sigma, (n, len(q0))), lo, hi)
            res = bench(name, fn, sim, poses)
            print(f"{name:<8} {size:>4}x{size:<3} {n:>6} {res['fps']:>9.1f} {res['p50']:>8.2f} {res['p99']:>8.2f}")
            if args.save:
                os.makedirs(args.save, exist_ok=True)
                from PIL import Image

                sim.reset(0)
                tag = args.scene if args.robot is None else os.path.splitext(os.path.basename(config_path(args.robot)))[0]
                Image.fromarray(fn()).save(os.path.join(args.save, f"{tag}_{name}_{size}.png"))
    sim.close()


if __name__ == "__main__":
    main()
