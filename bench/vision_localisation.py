"""How precisely the visuomotor network's feature points locate the object after vision pretraining.

    python bench/vision_localisation.py [--config ros2_ws/src/gps_ros/config/panda_peg_vision.yaml]
        [--set policy.shift=2 ...] [--test-frames 300]

Renders the config's pretraining set (``policy.pretrain_frames`` camera frames of random object
positions in ``agent.target_region``, the arm around its start pose), pretrains the network's conv
layers and auxiliary head as the first S-step does (``policy.pretrain_iterations`` Adam steps at
``policy.pretrain_lr``, with the config's ``policy.shift`` image translations), then predicts the
object position on fresh frames (another seed; the arm near its start pose, as at the start of a
trial) and prints the error: RMSE per horizontal axis and the fraction of frames within 3 mm and
1 cm.  For the peg the hole must be found to within the funnel of its entry (chamfer + clearance),
for the cube to within a few centimetres.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="ros2_ws/src/gps_ros/config/panda_peg_vision.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--test-frames", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0, help="the experiment seed (network initialisation, "
                    "minibatches, pretraining frames)")
    args = ap.parse_args(argv)

    from gps_ros.config import load_config
    from gps_ros.policy.pretrain import render_pretrain_set
    from gps_ros.train import build_trainer

    cfg = load_config(args.config, args.set + [f"seed={args.seed}"])
    pc = cfg.policy
    if cfg.agent.camera is None or not pc.pretrain_frames or not pc.aux_weight:
        ap.error(f"{args.config} has no camera or no vision pretraining (policy.pretrain_frames, "
                 "policy.aux_weight)")
    t0 = time.perf_counter()
    # the pretraining set exactly as training renders it (gps_ros.train.build_policy)
    images, objects = render_pretrain_set(cfg.agent, pc.pretrain_frames, seed=cfg.seed + 7919,
                                          joint_noise=pc.pretrain_joint_noise)
    test_img, test_obj = render_pretrain_set(cfg.agent, args.test_frames, seed=1234, joint_noise=0.05)
    t_render = time.perf_counter() - t0
    tr = build_trainer(cfg, joint_dim=14, action_dim=7)
    t0 = time.perf_counter()
    tr.pretrain(images, objects, pc.pretrain_iterations, lr=pc.pretrain_lr)
    t_train = time.perf_counter() - t0
    pred = tr.predict_object(test_img)
    err = pred[:, :2] - test_obj[:, :2]
    rmse = 100 * np.sqrt((err ** 2).mean(0))
    dist = np.linalg.norm(err, axis=1)
    print(f"{args.config} {' '.join(args.set)}")
    print(f"  shift {pc.shift} px, {pc.pretrain_frames} frames, {pc.pretrain_iterations} steps "
          f"(render {t_render:.0f} s, train {t_train:.0f} s)")
    print(f"  held-out frames: {args.test_frames}; RMSE x {rmse[0]:.2f} cm, y {rmse[1]:.2f} cm; "
          f"within 3 mm {np.mean(dist < 0.003):.0%}, within 1 cm {np.mean(dist < 0.01):.0%}")


if __name__ == "__main__":
    main()
