"""In-process training: config -> PyBullet agent + GPS loop -> experiment directory.

``train(cfg, out)`` starts a run, ``resume(out)`` continues one from its last complete iteration.
Both are what ``gps-ros train`` calls; ML users can call them directly.
"""
from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .algorithm import LQRFLM
from .config import ExperimentConfig
from .dynamics import DynamicsFitter
from .experiment import Experiment, ExperimentError
from .task import build_cost, build_initial_controllers

log = logging.getLogger(__name__)


def build_fitter(cfg: ExperimentConfig) -> DynamicsFitter:
    d = cfg.dynamics
    return DynamicsFitter(
        use_prior=d.type == "gmm_prior", regularization=d.regularization,
        prior_kwargs=dict(max_clusters=d.prior.max_clusters,
                          min_samples_per_cluster=d.prior.min_samples_per_cluster,
                          max_samples=d.prior.max_samples, strength=d.prior.strength,
                          em_iterations=d.prior.em_iterations, seed=cfg.seed))


def build_algorithm(cfg: ExperimentConfig, agent) -> LQRFLM:
    """The LQR-FLM loop over ``agent`` (a SimAgent or any Sampler exposing ``sim``)."""
    sim = agent.sim
    cost = build_cost(cfg, sim)
    controllers = build_initial_controllers(cfg, sim)
    ic = cfg.init_controller
    return LQRFLM(cfg.algorithm, agent, build_fitter(cfg), cost, controllers, cfg.seed,
                  distance_fn=lambda X: sim.ee_distance(X[:, -1]),
                  noise_kwargs=dict(smooth=ic.smooth_noise, sigma=ic.smooth_sigma))


def _state_of(algo: LQRFLM) -> dict:
    return {"iteration": algo.iteration, "trials": algo.trials, "conditions": algo.conditions,
            "fitter": algo.fitter}


def _restore(algo: LQRFLM, state: dict) -> None:
    if len(state["conditions"]) != algo.M:
        raise ExperimentError(f"saved state has {len(state['conditions'])} conditions, "
                              f"config has {algo.M}")
    algo.iteration = state["iteration"]
    algo.trials = state["trials"]
    algo.conditions = state["conditions"]
    algo.fitter = state["fitter"]


def default_out_dir(cfg: ExperimentConfig) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.name}-seed{cfg.seed}-{stamp}"


def format_line(m: dict, total: int) -> str:
    dist = " ".join(f"{100 * d:5.1f}" for d in m["final_distance"])
    t = m["time"]
    return (f"iter {m['iteration']:3d}/{total}  trials {m['trials']:4d}  cost {m['cost']:10.3f}  "
            f"final dist cm [{dist}]  step {np.mean(m['step_mult']):.2f}  "
            f"time s: sample {t['sample']:.1f} dyn {t['dynamics']:.2f} lqr {t['lqr']:.2f} "
            f"total {t['total']:.1f}")


def run(exp: Experiment, algo: LQRFLM, iterations: int, progress: bool = True,
        on_iteration: Optional[Callable[[dict], None]] = None) -> list:
    """Run ``algo`` until it has completed ``iterations``, writing everything to ``exp``."""
    from tqdm import tqdm

    rows = [r for r in exp.read_metrics() if r["iteration"] <= algo.iteration]
    bar = tqdm(total=iterations, initial=algo.iteration, desc=exp.cfg.name, unit="it",
               disable=not progress, dynamic_ncols=True, leave=False)
    try:
        while algo.iteration < iterations:
            res = algo.run_iteration()
            exp.write_iteration(res, [st.controller for st in algo.conditions])
            rows.append(res.metrics)
            exp.write_metrics(rows)
            exp.plot(rows)
            exp.save_state(_state_of(algo))        # the commit point of this iteration
            line = format_line(res.metrics, iterations)
            if progress:
                tqdm.write(line)
            log.info(line)
            bar.update(1)
            bar.set_postfix(dist_cm=f"{100 * max(res.metrics['final_distance']):.1f}")
            if on_iteration is not None:
                on_iteration(res.metrics)
    finally:
        bar.close()
    return rows


def train(cfg: ExperimentConfig, out: Optional[str | Path] = None, iterations: Optional[int] = None,
          progress: bool = True) -> Path:
    """Start a new run of ``cfg`` in ``out``; return the experiment directory."""
    from .agents import SimAgent

    out = Path(out) if out is not None else default_out_dir(cfg)
    exp = Experiment.create(out, cfg)
    agent = SimAgent(cfg.agent)
    try:
        algo = build_algorithm(cfg, agent)
        run(exp, algo, iterations or cfg.iterations, progress)
    finally:
        agent.close()
    return out


def resume(out: str | Path, iterations: Optional[int] = None, progress: bool = True) -> Path:
    """Continue the run in ``out`` from its last complete iteration."""
    from .agents import SimAgent

    exp = Experiment.open(out)
    cfg = exp.cfg
    agent = SimAgent(cfg.agent)
    try:
        algo = build_algorithm(cfg, agent)
        state = exp.load_state()
        if state is not None:
            _restore(algo, state)
        target = iterations or cfg.iterations
        if algo.iteration >= target:
            log.info("%s already has %d iterations (target %d)", out, algo.iteration, target)
        run(exp, algo, target, progress)
    finally:
        agent.close()
    return Path(out)
