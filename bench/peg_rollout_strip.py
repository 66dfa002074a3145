"""A PNG strip of one peg-insertion rollout (ros2_ws/src/gps_ros/doc/img/peg_rollout.png).

    python bench/peg_rollout_strip.py RUN_DIR [--condition 0] [--iteration LAST] [--frames 6]
        [--out ros2_ws/src/gps_ros/doc/img/peg_rollout.png] [--size 192 144] [--policy]

Replays a trained run noiselessly: by default the local controller of ``--condition`` from
``RUN_DIR/iterations/NNNN/controllers.npz``; with ``--policy`` the run's global policy (an MDGPS
run) on a held-out hole position drawn from ``agent.target_region`` (``--held-out-seed``).
Frames come from PyBullet's TinyRenderer (the full meshes) through a close camera on the block,
evenly spaced over the trial; the title line gives the final insertion depth.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gps_ros.agents import SimAgent
from gps_ros.evaluate import load_controllers
from gps_ros.experiment import Experiment
from gps_ros.overlay import encode_png
from gps_ros.sim.camera import Camera, CameraConfig


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--condition", type=int, default=0)
    ap.add_argument("--iteration", type=int, default=None)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--size", type=int, nargs=2, default=[192, 144], metavar=("W", "H"))
    ap.add_argument("--out", default="ros2_ws/src/gps_ros/doc/img/peg_rollout.png")
    ap.add_argument("--policy", action="store_true", help="roll out the global policy (MDGPS run) "
                    "on a held-out hole position instead of a local controller")
    ap.add_argument("--held-out-seed", type=int, default=0)
    args = ap.parse_args(argv)

    exp = Experiment.open(args.run)
    cfg = exp.cfg
    rows = exp.read_metrics()
    it = args.iteration or rows[-1]["iteration"]
    W, H = args.size
    agent_cfg = cfg.agent
    if args.policy:                      # the held-out hole replaces the condition's
        from gps_ros.evaluate import held_out_targets

        hole = held_out_targets(cfg, 1, args.held_out_seed)[0]
        agent_cfg = cfg.agent.model_copy(deep=True)
        agent_cfg.conditions[args.condition].target = [float(v) for v in hole]
    with SimAgent(agent_cfg) as agent:
        sim = agent.sim
        if args.policy:
            from gps_ros.evaluate import _load_policy

            actor = _load_policy(Path(args.run))[1].actor()
            label = f"policy, held-out hole ({hole[0]:.3f}, {hole[1]:.3f})"
        else:
            actor = load_controllers(Path(args.run) / "iterations" / f"{it:04d}" / "controllers.npz")[args.condition]
            label = f"LQR-FLM controller, condition {args.condition}, iteration {it}"
        target = np.asarray(agent_cfg.conditions[args.condition].target, float)
        cam = Camera(CameraConfig(width=W, height=H, fov=45.0, renderer="tiny",
                                  eye=(target[0] + 0.45, target[1] + 0.32, 0.30),
                                  target=(target[0], target[1], 0.10)))
        wants_image = bool(getattr(actor, "needs_image", False))
        img_cam = agent.camera
        T = cfg.agent.T
        # as in training: X[t] is the state the action u_t is applied in, the score is X[T-1]'s
        idx = set(np.linspace(0, T - 1, args.frames).astype(int).tolist())
        tiles = []
        x = sim.reset(args.condition)
        zero = np.zeros(sim.dU)
        for t in range(T):
            if t in idx:
                tiles.append(cam.render(sim))
            if t == T - 1:
                break
            if wants_image:
                u = actor.act(t, x, zero, image=img_cam.render(sim))
            else:
                u = actor.act(t, x, zero)
            x = sim.step(u)
        depth, ok = sim.insertion(x)
    strip = np.concatenate(tiles, axis=1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_png(strip))
    print(f"{out}: {label}; final insertion depth {100 * float(depth):.1f} cm "
          f"({'inserted' if ok else 'not inserted'})")


if __name__ == "__main__":
    main()
