"""BPTT through a learned model: the policy gradient's size and spread against the horizon H.

    python bench/bptt_gradients.py --run RUN [--horizons 0 1 2 5 10 20 40] [--draws 20]

RUN is a model-based run directory (``gps-ros train`` with ``algorithm.type`` mbpo, dyna or bptt):
its committed state gives the fitted ensemble, the SAC actor and critic, and the real states.  For
each H the script draws ``--draws`` independent minibatches (``--batch`` real start states, the
actor's and the model's noise, the elite per rollout) and computes ∇θ of the BPTT objective
(:func:`gps_ros.mbrl.learner.bptt_objective`: the H-step model return with the critic at the end;
H = 0 is SAC's actor gradient).  It prints per H

* ``|g|``      the mean gradient norm over the draws,
* ``|E g|``    the norm of the mean gradient,
* ``rel var``  E|g − ḡ|² / |ḡ|²: how much of each draw's gradient is noise (≫ 1: the draws
               mostly disagree),
* ``cos``      the mean cosine between pairs of draws,
* ``max |g|``  the largest draw's norm (heavy tails: a few rollouts dominate),

and ``--out FILE.json`` writes the same.  The lecture's prediction for backpropagation through a
long model chain: the Jacobian products make the gradient explode or vanish and its variance grow
with H, as with shooting methods; the learned value at the end of a short horizon is the remedy.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def gradient_draws(learner, horizon: int, draws: int, batch: int, seed: int):
    """(draws, n_params) gradients of the BPTT objective's loss (the negative return)."""
    import torch

    from gps_ros.mbrl.learner import bptt_objective

    sac = learner.agent
    params = list(sac.actor.parameters())
    alpha = torch.tensor(sac.alpha)
    x_all = learner.real.arrays()[0]
    out = []
    for d in range(draws):
        gen = torch.Generator().manual_seed(seed * 100003 + d)
        x0 = x_all[torch.randint(0, x_all.shape[0], (batch,), generator=gen)]
        obj = bptt_objective(sac, learner.model, learner.reward, learner.box, x0, horizon, gen,
                             learner.cfg.gamma)
        loss, _ = obj(sac, alpha)
        grads = torch.autograd.grad(loss, params)
        out.append(torch.cat([g.reshape(-1) for g in grads]).double().numpy())
    return np.array(out)


def summarise(G: np.ndarray) -> dict:
    norms = np.linalg.norm(G, axis=1)
    mean = G.mean(axis=0)
    mn = float(np.linalg.norm(mean))
    rel_var = float(np.mean(np.sum((G - mean) ** 2, axis=1)) / max(mn ** 2, 1e-300))
    unit = G / np.maximum(norms[:, None], 1e-300)
    C = unit @ unit.T
    n = len(G)
    cos = float((C.sum() - np.trace(C)) / max(n * (n - 1), 1))
    return {"grad_norm": float(norms.mean()), "mean_grad_norm": mn, "relative_variance": rel_var,
            "cosine": cos, "max_grad_norm": float(norms.max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, type=Path, help="a model-based run directory")
    ap.add_argument("--horizons", type=int, nargs="+", default=[0, 1, 2, 5, 10, 20, 40])
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = ap.parse_args(argv)

    import torch

    from gps_ros.experiment import Experiment
    from gps_ros.mbrl import MODEL_BASED
    from gps_ros.train import _build

    exp = Experiment.open(args.run)
    cfg = exp.cfg
    if cfg.algorithm.type not in MODEL_BASED:
        print(f"{args.run} is a {cfg.algorithm.type} run; this needs mbpo, dyna or bptt", file=sys.stderr)
        return 2
    state = exp.load_state()
    if state is None:
        print(f"{args.run} has no committed iteration yet", file=sys.stderr)
        return 2
    agent, learner = _build(cfg)
    agent.close()
    learner.restore(state)
    torch.set_num_threads(1)
    print(f"{args.run}: {cfg.algorithm.type} after iteration {learner.iteration} "
          f"({learner.trials} trials, {learner.real.n} real transitions), gamma {cfg.model_based.gamma}, "
          f"{args.draws} draws of {args.batch} start states per H")
    print(f"{'H':>4} {'|g|':>10} {'|E g|':>10} {'rel var':>10} {'cos':>7} {'max |g|':>10} {'s':>6}")
    rows = []
    for H in args.horizons:
        t0 = time.perf_counter()
        s = summarise(gradient_draws(learner, H, args.draws, args.batch, args.seed))
        s["horizon"], s["seconds"] = H, time.perf_counter() - t0
        rows.append(s)
        print(f"{H:4d} {s['grad_norm']:10.3g} {s['mean_grad_norm']:10.3g} "
              f"{s['relative_variance']:10.3g} {s['cosine']:7.3f} {s['max_grad_norm']:10.3g} "
              f"{s['seconds']:6.1f}", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"run": str(args.run), "iteration": learner.iteration,
                                        "draws": args.draws, "batch": args.batch, "rows": rows},
                                       indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
