"""PILQR: an LQR-FLM step on what the local models explain, a PI² step on what they do not.

Chebotar, Hausman, Zhang, Sukhatme, Schaal & Levine 2017, "Combining model-based and model-free
updates for trajectory-centric reinforcement learning".  Per condition:

1. **LQR step**: the KL-constrained LQR under the fitted linear-Gaussian dynamics and the quadratic
   cost expansion, KL(p_lqr ‖ p) ≈ ε_LQR (any ``TrajectoryOptimizer``: over ROS it stays on the
   trajopt node);
2. **residual**: for each sample i the per-step cost the local model predicts for it — the fitted
   mean dynamics rolled out from the sample's own x_0 under the sampling controller p with the
   sample's own action noise δ_i,t = u_i,t − K_t x_i,t − k_t, costed with the quadratic expansion —
   and the residual r_i,t = c_i,t − ĉ_i,t (what the model gets wrong: unmodelled dynamics, the
   realised dynamics noise, the cost's non-quadratic part).  The sample's x_0 is observed, so
   initial-state variation is not counted as model error;
3. **PI² step on the residual** (:mod:`gps_ros.control.pi2`), applied to the *LQR-updated*
   controller: its gains K_lqr are kept and its k_lqr, Σ_lqr are moved by the weights, the samples'
   whitened noise seen through Σ_lqr (as if the same noise had been drawn from p_lqr).

**The KL split.**  As in the paper, the two steps have separate budgets: the LQR's trajectory budget
ε_LQR = kl_step·step_mult·T comes from the caller and is adapted by the residual rule (see
:func:`residual_ratio`; ``LQRFLM`` applies it), the PI² budget is the fixed per-step
``pi2_kl_step`` on the sample weights.  The PI² temperature is the larger of (a) the one that spends
the PI² budget on the *full* cost-to-go (the paper's choice: the residual is weighed at the scale of
the whole cost, so a residual that is small next to the cost moves the controller little, and a
zero residual not at all — PILQR then *is* the LQR step) and (b) the one that spends it on the
residual cost-to-go (our addition: so that a residual larger than the cost's own spread cannot
exceed the budget).
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from .lin_gauss import LinearGaussianController, traj_kl
from .lqr import QuadraticCost
from .pi2 import (PI2, PI2Result, _marginals, check_samples, cost_to_go, solve_temperature,
                  whitened_noise)


def predicted_costs(dyn, cost: QuadraticCost, ctrl: LinearGaussianController, X: np.ndarray,
                    U: np.ndarray) -> np.ndarray:
    """ĉ_i,t: the per-step cost the local model predicts for each sample (N, T).

    The fitted mean dynamics x̂_{t+1} = F_t [x̂_t; û_t] + f_t from x̂_0 = x_i,0, with
    û_t = K_t x̂_t + k_t + δ_i,t and the sample's feed-forward noise δ_i,t = u_i,t − K_t x_i,t − k_t
    under ``ctrl`` (the sampling controller); costed with the quadratic expansion ``cost``.  With
    exact noise-free linear dynamics x̂ = x, and with an exactly quadratic cost ĉ = c.  Vectorised
    over samples; the rollout is a recursion over t.
    """
    N, T, dX = X.shape
    delta = U - ctrl.mean_actions(X)                                          # (N, T, dU)
    xu = np.empty((N, T, dX + U.shape[2]))
    x = X[:, 0].copy()
    for t in range(T):
        u = x @ ctrl.K[t].T + ctrl.k[t] + delta[:, t]
        xu[:, t, :dX], xu[:, t, dX:] = x, u
        if t < T - 1:
            x = xu[:, t] @ dyn.Fm[t].T + dyn.fv[t]
    quad = 0.5 * np.einsum("nti,tij,ntj->nt", xu, cost.Cm, xu)
    return quad + np.einsum("nti,ti->nt", xu, cost.cv) + cost.cc


def residual_costs(dyn, cost: QuadraticCost, ctrl: LinearGaussianController, X: np.ndarray,
                   U: np.ndarray, c: np.ndarray) -> np.ndarray:
    """r_i,t = c_i,t − ĉ_i,t (N, T): the part of the samples' cost the local model misses."""
    return np.asarray(c, dtype=float) - predicted_costs(dyn, cost, ctrl, X, U)


def residual_ratio(dyn, cost: QuadraticCost, ctrl: LinearGaussianController, X: np.ndarray,
                   U: np.ndarray, c: np.ndarray) -> float:
    """mean_i Σ_t ``|r_i,t|`` / mean_i Σ_t ``|c_i,t|``: how much of the cost the model fails to explain.

    The paper's step rule (``res_percent``): above ``pilqr_res_ratio_dec`` the LQR step is halved,
    below ``pilqr_res_ratio_inc`` doubled — trust the model-based step as far as the model explains
    the cost."""
    r = residual_costs(dyn, cost, ctrl, X, U, c)
    denom = float(np.mean(np.abs(c).sum(axis=1)))
    return float(np.mean(np.abs(r).sum(axis=1)) / max(denom, 1e-300))


class PILQR:
    """``TrajectoryOptimizer``: ``lqr`` (any TrajectoryOptimizer) then a PI² step on the residual.

    Args:
        lqr: the model-based step, e.g. :class:`gps_ros.algorithm.KLConstrainedLQR` or the ROS
            proxy of the trajopt node; called with ``dynamics, costs, prev, epsilon, eta0``.

        pi2: the PI² settings (its ``kl_step`` is the per-step budget of the model-free step).

    The result's ``eta`` is the LQR's (so the next dual search is warm-started), ``kl`` the KL of
    the final controller to ``prev`` under the fitted dynamics, ``epsilon`` the LQR's budget; the
    PI² part's weight KL and temperatures are in ``weight_kl`` / ``etas``.
    """

    def __init__(self, lqr, pi2: PI2):
        self.lqr = lqr
        self.pi2 = pi2

    def optimize(self, dynamics: Sequence, costs: Sequence[QuadraticCost],
                 prev: Sequence[LinearGaussianController], epsilon, eta0, samples=None,
                 sample_costs=None) -> List[PI2Result]:
        M = len(prev)
        step_costs = check_samples(samples, sample_costs, M, "PILQR")
        lqr_results = self.lqr.optimize(dynamics, costs, prev, epsilon, eta0)
        results = []
        for m in range(M):
            tr, p, lq, dyn = samples[m], prev[m], lqr_results[m], dynamics[m]
            c = step_costs[m]
            noise = whitened_noise(p, tr.X, tr.U)
            R = cost_to_go(residual_costs(dyn, costs[m], p, tr.X, tr.U, c))
            eta_full = solve_temperature(cost_to_go(c), self.pi2.kl_step, self.pi2.tolerance)[0]
            ctrl, eta, kl_w, conv, it, _, s = self.pi2.step(p, noise, R, base=lq.controller,
                                                          eta_floor=eta_full)
            mu, sigma = _marginals(dyn, ctrl)
            kl = float(traj_kl(mu, sigma, ctrl, p).sum())
            results.append(PI2Result(ctrl, float(lq.eta), kl, float(lq.epsilon),
                                     bool(lq.converged and conv.all()), int(lq.iterations) + it,
                                     mu, sigma, weight_kl=kl_w, etas=eta, cov_scale=s,
                                     pi2_epsilon=self.pi2.kl_step))
        return results
