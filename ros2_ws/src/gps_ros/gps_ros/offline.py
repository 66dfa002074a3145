"""Learning from recordings: a lab records trials on the robot and fits or trains elsewhere.

    gps-ros fit          --bag it1.mcap [--bag it2.mcap ...] --config task.yaml [--out dyn.npz]
    gps-ros train-policy --bag it1.mcap [--bag it2.mcap ...] --config task.yaml --out DIR

The recordings are an iteration's trials as ROS 2 messages (:mod:`gps_ros.record`: the MCAP files
of ``logging.mcap: true`` or ``gps-ros export-mcap``, which ``ros2 bag info`` / ``play`` read).
Both commands take the recordings in training order and repeat what the training did with them:

* :func:`fit_dynamics` -- the dynamics fit of each iteration (the config's prior remembers the
  earlier ones, as in training);
* :func:`train_policy` -- the S-step of each iteration (MDGPS): the config's network distilled
  from the recorded trials, labelled by the controllers that iteration computed (recorded on
  ``/gps_ros/controllers``), with the config's replay of earlier S-steps and its vision
  pretraining.  From the same recordings, seed and config the network is the one the training
  had; with another network section it is a new network trained on the robot's data.

Only the trials a training would use are used: discarded ones are dropped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Sequence

from .record import read_recording


def _valid_trials(bag: Path, task, states: str):
    rec = read_recording(bag, task, states=states)
    return rec, [tr.valid() for tr in rec.trials]


def fit_dynamics(cfg, bags: Sequence[Path], states: str = "auto",
                 progress: Callable[[str], None] = print) -> list:
    """The dynamics of the last recording, fitted after the earlier ones in order (the
    config's ``dynamics`` section and prior); one line per recording to ``progress``."""
    from .task import TaskModel
    from .train import build_fitter

    task = TaskModel(cfg.agent)
    fitter = build_fitter(cfg, task)
    dyn: list = []
    for bag in bags:
        _, trials = _valid_trials(bag, task, states)
        dyn = fitter.fit(trials)
        progress(f"{bag}: " + "; ".join(
            f"condition {m}: {tr.N} trials of {tr.T} steps, mean |Fm| {abs(d.Fm).mean():.4g}"
            for m, (tr, d) in enumerate(zip(trials, dyn))))
    return dyn


def train_policy(cfg, bags: Sequence[Path], out: Path, states: str = "auto",
                 progress: Callable[[str], None] = print):
    """The S-steps of the recorded iterations, in order; writes ``out/policy.pt`` (TorchScript,
    what ``deploy.launch.py checkpoint:=`` runs), ``out/config.yaml`` (the task the policy acts
    in, which deployment reads beside the checkpoint) and ``out/offline_training.json`` (the
    recordings and each S-step's losses).  Returns the :class:`gps_ros.policy.GlobalPolicy`.
    Raises ValueError (one line) for a recording without controllers or of another task."""
    from .atomic import atomic_write_bytes
    from .config import dump_config
    from .policy.export import export_torchscript
    from .task import TaskModel
    from .train import build_policy

    if cfg.algorithm.type == "lqr_flm":
        raise ValueError("the config trains local controllers only (algorithm.type lqr_flm); "
                         "train-policy needs a config with a policy (mdgps)")
    task = TaskModel(cfg.agent)
    policy, _ = build_policy(cfg, task)
    steps: List[Dict] = []
    for bag in bags:
        rec, trials = _valid_trials(bag, task, states)
        if rec.controllers is None:
            raise ValueError(f"{bag}: no controllers on /gps_ros/controllers (a recording made "
                             f"before they were recorded); re-export it with gps-ros export-mcap")
        for m, (tr, c) in enumerate(zip(trials, rec.controllers)):
            if (tr.dX, tr.dU, tr.T) != (c.dX, c.dU, c.T) or (tr.dX, tr.dU) != (task.dX, task.dU):
                raise ValueError(f"{bag}: condition {m}'s trials (dX {tr.dX}, dU {tr.dU}, T {tr.T})"
                                 f" do not fit its controller (dX {c.dX}, dU {c.dU}, T {c.T}) "
                                 f"or the config's task (dX {task.dX}, dU {task.dU})")
        if policy.image_key not in trials[0].obs and cfg.policy.use_image:
            raise ValueError(f"{bag}: no camera frames, and the config's policy sees images")
        info = policy.train(trials, rec.controllers)
        row = {"bag": str(bag), "iteration": rec.metadata.get("iteration"),
               "trials": int(sum(tr.N for tr in trials)),
               **{k: float(v) for k, v in info.items() if isinstance(v, (int, float))}}
        steps.append(row)
        progress(f"{bag}: S-step on {row['trials']} trials, loss "
                 f"{row.get('loss_start', float('nan')):.4g} -> {row.get('loss_end', float('nan')):.4g}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    export_torchscript(policy.trainer.net, out / "policy.pt")
    atomic_write_bytes(out / "config.yaml", dump_config(cfg).encode())
    atomic_write_bytes(out / "offline_training.json",
                       (json.dumps({"seed": cfg.seed, "s_steps": steps}, indent=1) + "\n").encode())
    progress(f"wrote {out / 'policy.pt'}")
    return policy

