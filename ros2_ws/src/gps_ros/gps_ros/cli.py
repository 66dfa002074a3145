"""Command line: ``gps-ros train | eval | export | export-mcap | fit | train-policy``.

::

    gps-ros train --config ros2_ws/src/gps_ros/config/panda_reach.yaml --seed 0 --out runs/reach0
    gps-ros train --config .../panda_vision.yaml --set policy.use_image=false   (the blind ablation)
    gps-ros train --resume runs/reach0 [--iterations 15]
    gps-ros eval --run runs/vision0 --targets 20 --seed 100 --out eval.json [--video [eval.mp4]]
                 [--camera 640x480:jpeg]
    gps-ros export --run runs/vision0 [--out policy.pt]
    gps-ros export-mcap --run runs/reach0 [--iteration 5] [--out trials.mcap]
    gps-ros fit --bag trials.mcap --config config/panda_reach.yaml [--out dynamics.npz]
    gps-ros train-policy --bag it1.mcap --bag it2.mcap --config config/panda_vision.yaml --out DIR

Errors in the user's input (config, experiment directory) are one line on stderr and exit code 2;
a failure during training (e.g. every trial of a condition discarded) is one line and exit code 1.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gps-ros", description="Guided policy search for robot arms.")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train with LQR-FLM or MDGPS (in-process PyBullet)")
    src = tr.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="experiment YAML")
    src.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR to the "
                     "iterations it was started with")
    tr.add_argument("--seed", type=int, help="overrides the config's seed")
    tr.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a config entry, e.g. --set policy.use_image=false (repeatable)")
    tr.add_argument("--out", type=Path, help="experiment directory (default runs/NAME-seedS-TIME)")
    tr.add_argument("--iterations", type=int, help="total iterations (overrides the config; the run "
                    "keeps it, so --resume continues to it)")
    tr.add_argument("--gui", action="store_true", help="show the PyBullet GUI")
    tr.add_argument("--quiet", action="store_true", help="no progress display")
    ev = sub.add_parser("eval", help="run the global policy on held-out targets")
    ev.add_argument("--run", type=Path, required=True, metavar="DIR", help="experiment directory")
    ev.add_argument("--targets", type=int, default=20, help="number of held-out targets")
    ev.add_argument("--seed", type=int, default=100, help="seed of the held-out targets")
    ev.add_argument("--out", type=Path, help="JSON result (default DIR/eval_seedS.json); a PNG "
                    "strip of one rollout with the feature points goes next to it")
    ev.add_argument("--video", nargs="?", const="", metavar="PATH",
                    help="also write an MP4 of all rollouts: the frames the policy saw with its "
                    "feature points (default DIR/eval_seedS.mp4)")
    ev.add_argument("--camera", metavar="WxH:TRANSPORT",
                    help="see through a real camera's pipeline: render at WxH, send every frame "
                    "as TRANSPORT (rgb8, bgr8, rgba8, bgra8, mono8, jpeg, png) and bring it back "
                    "through the config camera's crop + area resize, e.g. 640x480:jpeg")
    ev.add_argument("--video-scale", type=int, default=4, metavar="K",
                    help="upscale the network's frames K times (nearest neighbour; default 4)")
    ev.add_argument("--video-fps", type=float, metavar="FPS",
                    help="frame rate (default the control rate: real time)")
    xp = sub.add_parser("export", help="write the global policy as TorchScript for deployment")
    xp.add_argument("--run", type=Path, required=True, metavar="DIR", help="experiment directory")
    xp.add_argument("--out", type=Path, help="output file (default DIR/policy.pt)")
    ex = sub.add_parser("export-mcap", help="write an iteration's trials as ROS 2 messages (MCAP)")
    ex.add_argument("--run", type=Path, required=True, metavar="DIR", help="experiment directory")
    ex.add_argument("--iteration", type=int, help="iteration (default: the last complete one)")
    ex.add_argument("--out", type=Path, help="output file (default DIR/iterations/NNNN/trials.mcap)")
    fi = sub.add_parser("fit", help="fit the dynamics offline from recorded trials (MCAP / rosbag2)")
    fi.add_argument("--bag", type=Path, required=True, action="append",
                    help="an MCAP recording of gps_ros trials (gps-ros export-mcap, logging.mcap); "
                         "repeat it for several iterations, in order: the prior carries over, as "
                         "in the training")
    fi.add_argument("--config", type=Path, required=True, help="the task config (robot, targets)")
    fi.add_argument("--out", type=Path, help="dynamics .npz of the last bag (default: that BAG "
                                             "with .dynamics.npz)")
    tp = sub.add_parser("train-policy", help="train the config's policy offline from recorded "
                        "trials and controllers (MCAP / rosbag2): the S-steps of MDGPS")
    tp.add_argument("--bag", type=Path, required=True, action="append",
                    help="an MCAP recording with its controllers (logging.mcap, gps-ros "
                         "export-mcap); repeat it for several iterations, in order: the config's "
                         "replay keeps earlier S-steps' data, as in training")
    tp.add_argument("--config", type=Path, required=True,
                    help="the task config (robot, camera, policy network)")
    tp.add_argument("--out", type=Path, required=True, metavar="DIR",
                    help="writes DIR/policy.pt (TorchScript, for deploy.launch.py), "
                         "DIR/config.yaml and DIR/offline_training.json")
    tp.add_argument("--seed", type=int, help="the network's seed (default: the config's)")
    for p in (fi, tp):
        p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override a config value, e.g. policy.hidden=[64,64] (another "
                            "network) or dynamics.prior.strength=2")
        p.add_argument("--states", choices=("auto", "recorded", "joint_states"), default="auto",
                       help="the trials' states: as the sampler recorded them (gps_msgs/Trajectory)"
                            ", or rebuilt from /joint_states by the robot model; auto: recorded "
                            "where the file has them")
    from .targets import add_arguments as _targets_arguments

    _targets_arguments(sub.add_parser("targets", help="record a condition's reach target from the "
                                      "arm's current pose (record), list the targets (show)"))
    return ap


def _fail(msg: str) -> int:
    print(f"gps-ros: error: {msg}", file=sys.stderr)
    return 2


def _offline(args) -> int:
    """``gps-ros fit`` (the dynamics, written like an iteration's dynamics.npz) and ``gps-ros
    train-policy`` (the S-steps) from recorded trials: :mod:`gps_ros.offline`."""
    from . import offline
    from .atomic import atomic_savez
    from .config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.set)
        if args.command == "train-policy":
            if args.seed is not None:
                cfg.seed = args.seed
            offline.train_policy(cfg, args.bag, args.out, states=args.states)
            return 0
        dyn = offline.fit_dynamics(cfg, args.bag, states=args.states)
    except (ConfigError, ValueError, OSError) as err:
        return _fail(str(err))
    arrays = {f"c{m:02d}/{k}": v for m, d in enumerate(dyn) for k, v in d.to_arrays().items()}
    out = args.out or args.bag[-1].with_suffix(".dynamics.npz")
    atomic_savez(out, **arrays)
    print(f"wrote {out}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "targets":
        from .targets import main as targets_main

        return targets_main(args)
    from .config import ConfigError, load_config
    from .experiment import ExperimentError
    from .train import resume, train

    if args.command == "export-mcap":
        from .experiment import export_iteration

        if args.iteration is not None and args.iteration < 1:
            return _fail("--iteration must be at least 1")
        try:
            path = export_iteration(args.run, args.iteration, args.out)
        except ExperimentError as err:
            return _fail(str(err))
        except ImportError as err:
            return _fail(f"MCAP export needs the mcap and mcap-ros2-support packages ({err})")
        print(f"wrote {path}")
        return 0
    if args.command in ("fit", "train-policy"):
        return _offline(args)
    if args.command == "eval":
        from .evaluate import evaluate

        if args.targets < 1:
            return _fail("--targets must be at least 1")
        if args.video_scale < 1 or args.video_scale > 32:
            return _fail("--video-scale must be between 1 and 32")
        if args.video_fps is not None and not args.video_fps > 0:
            return _fail("--video-fps must be positive")
        out = args.out or args.run / f"eval_seed{args.seed}.json"
        video = None if args.video is None else (Path(args.video) if args.video
                                                  else args.run / f"eval_seed{args.seed}.mp4")
        try:
            res = evaluate(args.run, args.targets, args.seed, out, video=video,
                           video_scale=args.video_scale, video_fps=args.video_fps,
                           camera=args.camera)
        except ExperimentError as err:
            return _fail(str(err))
        shown = (f", video {res['video']} ({res['video_frames']} frames at {res['video_fps']:g} fps, "
                 f"{res['video_seconds']:.1f} s to write)" if video is not None else "")
        if res.get("success") == "inserted":
            import numpy as np

            how = (f"{sum(res['inserted'])}/{len(res['inserted'])} inserted, mean depth "
                   f"{100 * float(np.mean(res['insertion_depth'])):.1f} cm")
        else:
            how = (f"{sum(d < res['success_distance'] for d in res['final_distance'])}"
                   f"/{len(res['final_distance'])} within {100 * res['success_distance']:.0f} cm")
        print(f"success rate {res['success_rate']:.0%} ({how}), "
              f"mean final distance {100 * res['mean_final_distance']:.1f} cm"
              f"{f' through the camera {args.camera}' if args.camera else ''} -> {out}{shown}")
        from .provenance import summary

        trained = res.get("trained_with")
        print(f"  trained with:   {summary(trained) if trained else 'not recorded (an older run)'}")
        print(f"  evaluated with: {summary(res['evaluated_with'])}")
        return 0
    if args.command == "export":
        from .evaluate import export_policy

        try:
            path, err = export_policy(args.run, args.out)
        except ExperimentError as e:
            return _fail(str(e))
        print(f"wrote {path} (max |action difference| to the checkpoint {err:.2e})")
        return 0
    if args.iterations is not None and args.iterations < 1:
        return _fail("--iterations must be at least 1")
    try:
        if args.resume is not None:
            if args.seed is not None or args.gui or args.out is not None or args.set:
                return _fail("--resume takes only --iterations; seed, out and config come from the run")
            out = resume(args.resume, args.iterations, progress=not args.quiet)
        else:
            cfg = load_config(args.config, args.set)
            if args.seed is not None:
                cfg.seed = args.seed
            if args.gui:
                cfg.agent.gui = True
            out = train(cfg, args.out, args.iterations, progress=not args.quiet)
    except (ConfigError, ExperimentError) as err:
        return _fail(str(err))
    except RuntimeError as err:
        # a failure during training (e.g. every trial of a condition discarded): one line, exit 1;
        # everything up to the last complete iteration is committed and can be resumed
        if args.verbose:
            raise
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"gps-ros: training failed: {first} (the run keeps its last complete iteration; "
              "-v for the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gps-ros: interrupted; resume with --resume", file=sys.stderr)
        return 130
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
