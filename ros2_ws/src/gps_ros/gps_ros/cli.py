"""Command line: ``gps-ros train``.

    gps-ros train --config ros2_ws/src/gps_ros/config/panda_reach.yaml --seed 0 --out runs/reach0
    gps-ros train --resume runs/reach0 [--iterations 15]

Errors in the user's input (config, experiment directory) are one line on stderr and exit code 2.
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
    tr = sub.add_parser("train", help="train local controllers with LQR-FLM (in-process PyBullet)")
    src = tr.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="experiment YAML")
    src.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR")
    tr.add_argument("--seed", type=int, help="overrides the config's seed")
    tr.add_argument("--out", type=Path, help="experiment directory (default runs/NAME-seedS-TIME)")
    tr.add_argument("--iterations", type=int, help="total iterations (overrides the config)")
    tr.add_argument("--gui", action="store_true", help="show the PyBullet GUI")
    tr.add_argument("--quiet", action="store_true", help="no progress display")
    return ap


def _fail(msg: str) -> int:
    print(f"gps-ros: error: {msg}", file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from .config import ConfigError, load_config
    from .experiment import ExperimentError
    from .train import resume, train

    if args.iterations is not None and args.iterations < 1:
        return _fail("--iterations must be at least 1")
    try:
        if args.resume is not None:
            if args.seed is not None or args.gui or args.out is not None:
                return _fail("--resume takes only --iterations; seed, out and config come from the run")
            out = resume(args.resume, args.iterations, progress=not args.quiet)
        else:
            cfg = load_config(args.config)
            if args.seed is not None:
                cfg.seed = args.seed
            if args.gui:
                cfg.agent.gui = True
            out = train(cfg, args.out, args.iterations, progress=not args.quiet)
    except (ConfigError, ExperimentError) as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        print("gps-ros: interrupted; resume with --resume", file=sys.stderr)
        return 130
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
