"""PI² (policy improvement with path integrals) for time-varying linear-Gaussian controllers.

A model-free C-step: the controller p(u|x) = N(K x + k, Σ) that produced N samples is improved
from those samples alone (Theodorou, Buchli & Schaal 2010; the KL-bounded temperature of REPS,
Peters et al. 2010, as in Chebotar et al. 2017).  Per time step t:

1. the cost-to-go S_i,t = Σ_{s≥t} c_i,s of each sample i;
2. softmax weights w_i,t ∝ exp(−S_i,t / η_t), the temperature η_t chosen so that
   KL(w_t ‖ uniform) = Σ_i w_i,t log(N w_i,t) equals the per-step budget ε (or is below it at the
   smallest temperature, when the budget exceeds what N samples can spend — at most log N).
   This is the stationarity condition of the REPS dual g(η) = η ε + η log (1/N) Σ_i exp(−S_i/η):
   the reweighted sample distribution is the solution of min E_q[S] s.t. KL(q ‖ p̂) ≤ ε with p̂
   the empirical sampling distribution.  We solve KL(η) = ε directly (a bisection on log η,
   vectorised over t, monotone because the softmax entropy grows with η) instead of minimising g;
   both give the same η.  **η_t is in the units of the cost** (a temperature on the cost-to-go);
3. only the *feed-forward + noise* part of the samples is re-fitted: with the sampling
   controller's whitened noise ε_i,t = L_t⁻¹ (u_i,t − K_t x_i,t − k_t) (L L ᵀ = Σ), the gains K
   are kept and

       k'_t = k_t + L_t Σ_i (w_i,t − 1/N) ε_i,t

   — the weighted mean of the sampled feed-forwards minus their unweighted mean, so that uniform
   weights (η → ∞, or all samples equally good) leave k unchanged instead of moving it to the
   sample mean, a Monte-Carlo error no cost asked for;
4. the covariance is scaled, Σ'_t = s_t Σ_t, by the *damped* ratio of the weighted to the
   unweighted whitened spread, each bias-corrected for its sample size,

       r_t = [tr Ĉ_w / (1 − Σ_i w_i²)] / [tr Ĉ_u / (1 − 1/N)],   s_t = clip(r_t^(1/damping), s_min, 1/s_min)

   (Ĉ_w, Ĉ_u the weighted / unweighted covariances of ε about their own means; both bracketed
   terms estimate dU when no sample is preferred, so r = 1 for uniform weights).  Keeping Σ's
   shape and damping the ratio (PI²-CMA, Stulp & Sigaud 2012; the reference GPS code's
   ``covariance_damping``) avoids the rank-deficient ML covariance of 1–5 samples; the floor s_min
   per iteration keeps a greedy weighting (a one-hot w, whose ML covariance is zero) from
   collapsing exploration in one step.

The new controller's KL to the old one has a closed form, as K is unchanged:
KL_t = ½ (dU s_t − dU − dU log s_t + Δk_tᵀ Σ_t⁻¹ Δk_t), independent of the state distribution.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .lin_gauss import LinearGaussianController
from .lqr import LQRResult, forward_pass

log = logging.getLogger(__name__)

# the temperature search, relative to each step's spread of the cost-to-go over the samples
_TAU_MIN, _TAU_MAX = 1e-6, 1e6
_MAX_BISECTIONS = 60


@dataclass
class PI2Result(LQRResult):
    """An :class:`LQRResult` from a PI² (or PILQR) step, with the PI² internals.

    ``eta`` is the geometric mean over t of the finite temperatures η_t (cost units; inf when no
    step had a spread of costs), for PILQR the LQR part's η (the warm start of the next dual
    search); ``kl`` the Gaussian KL(p' ‖ p) of the new controller summed over t; ``epsilon`` the
    PI² budget Σ_t ε (PILQR: the LQR's trajectory budget); ``converged`` whether every step's
    weight KL met its budget within the tolerance (or the budget was inactive).
    """

    weight_kl: Optional[np.ndarray] = None    # (T,) KL(w_t ‖ uniform) of the weights used
    etas: Optional[np.ndarray] = None         # (T,) temperatures η_t (cost units)
    cov_scale: Optional[np.ndarray] = None    # (T,) s_t, Σ' = s_t Σ
    pi2_epsilon: float = float("nan")         # the PI² per-step budget ε


def cost_to_go(costs: np.ndarray) -> np.ndarray:
    """S_i,t = Σ_{s ≥ t} c_i,s for per-step costs (N, T)."""
    return np.flip(np.cumsum(np.flip(costs, axis=1), axis=1), axis=1)


def softmax_weights(S: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """w_i,t ∝ exp(−S_i,t / η_t) for S (N, T) and η (T,) (inf: uniform), normalised over i."""
    S = np.asarray(S, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = -(S - S.min(axis=0)) / np.asarray(eta, dtype=float)
    z = np.where(np.isfinite(z), z, 0.0)
    w = np.exp(z - z.max(axis=0))
    return w / w.sum(axis=0)


def weights_kl(w: np.ndarray) -> np.ndarray:
    """KL(w_t ‖ uniform) = Σ_i w_i,t log(N w_i,t) for weights (N, T) -> (T,)."""
    N = w.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(w > 0, w * np.log(N * w), 0.0)
    return np.maximum(terms.sum(axis=0), 0.0)


def solve_temperature(S: np.ndarray, epsilon: float, tolerance: float = 0.05):
    """Per-step temperatures η_t with KL(w_t ‖ uniform) ≈ ε for cost-to-go S (N, T).

    A bisection on log(η_t / spread_t), spread_t = max_i S_i,t − min_i S_i,t, over
    [1e-6, 1e6], all t at once.  The returned η_t is the *feasible* end of the final bracket
    (KL ≤ ε), so the budget is never exceeded; where even the smallest temperature gives KL < ε
    (a budget beyond what the samples can spend, e.g. ε ≥ log N) it is that smallest one, and where
    all samples have the same cost-to-go (or N = 1) it is inf (uniform weights).

    Returns (eta (T,), weights (N, T), kl (T,), converged (T,) bool, bisections).
    """
    if not epsilon > 0:
        raise ValueError(f"PI² KL budget must be > 0, got {epsilon}")
    S = np.asarray(S, dtype=float)
    N, T = S.shape
    D = S - S.min(axis=0)
    spread = D.max(axis=0)
    flat = ~(spread > 1e-12 * np.maximum(1.0, np.abs(S).max(axis=0)))
    scale = np.where(flat, 1.0, spread)
    Z = D / scale                                         # in [0, 1]

    def kl_at(log_tau):
        w = softmax_weights(Z, np.exp(log_tau))
        return w, weights_kl(w)

    lo = np.full(T, np.log(_TAU_MIN))                     # KL(lo) > ε (unless inactive)
    hi = np.full(T, np.log(_TAU_MAX))                     # KL(hi) ≤ ε
    _, kl_lo = kl_at(lo)
    inactive = kl_lo <= epsilon
    hi = np.where(inactive, lo, hi)
    w, kl = kl_at(hi)
    done = inactive | flat | (np.abs(kl - epsilon) <= tolerance * epsilon)
    it = 0
    while not done.all() and it < _MAX_BISECTIONS:
        it += 1
        mid = 0.5 * (lo + hi)
        _, kl_mid = kl_at(mid)
        above = kl_mid > epsilon
        lo = np.where(~done & above, mid, lo)
        hi = np.where(~done & ~above, mid, hi)
        w, kl = kl_at(hi)
        done |= np.abs(kl - epsilon) <= tolerance * epsilon
    eta = np.where(flat, np.inf, np.exp(hi) * scale)
    w = softmax_weights(S, eta)
    kl = weights_kl(w)
    converged = flat | inactive | (np.abs(kl - epsilon) <= tolerance * epsilon)
    return eta, w, kl, converged, it


def whitened_noise(ctrl: LinearGaussianController, X: np.ndarray, U: np.ndarray) -> np.ndarray:
    """ε_i,t = L_t⁻¹ (u_i,t − K_t x_i,t − k_t): the standard-normal noise that (X (N, T, dX), U)
    show under ``ctrl`` (exactly the sampling noise for the controller's own samples, when the
    actions were not clipped) -> (N, T, dU)."""
    if X.shape[1] != ctrl.T or U.shape[2] != ctrl.dU or X.shape[2] != ctrl.dX:
        raise ValueError(f"samples X {X.shape}, U {U.shape} do not fit a controller with "
                         f"T={ctrl.T}, dU={ctrl.dU}, dX={ctrl.dX}")
    d = U - ctrl.mean_actions(X)
    return np.linalg.solve(ctrl.chol_pol_covar[None], d[..., None])[..., 0]


def pi2_controller(base: LinearGaussianController, noise: np.ndarray, w: np.ndarray,
                   covariance_damping: float = 2.0, min_cov_scale: float = 0.5):
    """Steps 3–4 of the module docstring: shift ``base``'s k and scale its Σ by the weights.

    ``noise`` (N, T, dU) whitened sample noise, ``w`` (N, T) weights.  ``base`` is the sampling
    controller (PI²) or the LQR-updated one (PILQR: the samples' noise seen through its
    covariance).  Returns (controller, Δk (T, dU), s (T,)).
    """
    N, T, dU = noise.shape
    dw = w - 1.0 / N                                                        # (N, T)
    shift = np.einsum("nt,ntu->tu", dw, noise)                              # whitened Δk
    dk = np.einsum("tuv,tv->tu", base.chol_pol_covar, shift)
    if N < 2:
        s = np.ones(T)
    else:
        mean_w = np.einsum("nt,ntu->tu", w, noise)
        spread_w = np.einsum("nt,ntu->t", w, (noise - mean_w) ** 2)
        spread_u = ((noise - noise.mean(axis=0)) ** 2).sum(axis=(0, 2)) / N
        denom_w = 1.0 - np.sum(w ** 2, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (spread_w / denom_w) / (spread_u / (1.0 - 1.0 / N))
        # one-hot weights: the ML covariance is zero -> the floor; no spread at all: no change
        r = np.where(denom_w < 1e-9, 0.0, r)
        r = np.where(spread_u > 0, r, 1.0)
        with np.errstate(divide="ignore"):
            s = np.power(np.maximum(r, 0.0), 1.0 / covariance_damping)
        s = np.clip(s, min_cov_scale, 1.0 / min_cov_scale)
    ctrl = LinearGaussianController(base.K.copy(), base.k + dk, base.pol_covar * s[:, None, None],
                                    base.chol_pol_covar * np.sqrt(s)[:, None, None],
                                    base.inv_pol_covar / s[:, None, None])
    return ctrl, dk, s


def feedforward_kl(prev: LinearGaussianController, dk: np.ndarray, s: np.ndarray) -> np.ndarray:
    """KL(N(k + Δk, sΣ) ‖ N(k, Σ)) per step (T,): the KL of a PI² update, which keeps K."""
    dU = prev.dU
    quad = np.einsum("tu,tuv,tv->t", dk, prev.inv_pol_covar, dk)
    return np.maximum(0.5 * (dU * s - dU - dU * np.log(s) + quad), 0.0)


def _marginals(dyn, ctrl: LinearGaussianController):
    """State-action marginals of ``ctrl`` under the fitted ``dyn`` (for the LQRResult's plan)."""
    mu, sigma = forward_pass(dyn.Fm[None], dyn.fv[None], dyn.dyn_covar[None], dyn.x0mu[None],
                             dyn.x0sigma[None], ctrl.K[None], ctrl.k[None], ctrl.pol_covar[None])
    return mu[0], sigma[0]


def geometric_mean(eta: np.ndarray) -> float:
    fin = eta[np.isfinite(eta) & (eta > 0)]
    return float(np.exp(np.mean(np.log(fin)))) if fin.size else float("inf")


def check_samples(samples, sample_costs, M: int, who: str):
    """Shared argument check of the sample-based optimisers: one Trajectories and one (N, T)
    per-step cost array per condition."""
    if samples is None or sample_costs is None:
        raise ValueError(f"{who} needs the samples and their per-step costs (samples=, "
                         "sample_costs=); the LQR-only interface gives it neither")
    if len(samples) != M or len(sample_costs) != M:
        raise ValueError(f"{who}: {len(samples)} sample sets and {len(sample_costs)} cost arrays "
                         f"for {M} conditions")
    out = []
    for m, (tr, c) in enumerate(zip(samples, sample_costs)):
        c = np.asarray(c, dtype=float)
        if c.shape != tr.X.shape[:2]:
            raise ValueError(f"{who}: condition {m}: per-step costs {c.shape} do not match the "
                             f"samples' (N, T) = {tr.X.shape[:2]}")
        if not np.isfinite(c).all():
            raise ValueError(f"{who}: condition {m}: non-finite sample costs")
        out.append(c)
    return out


class PI2:
    """In-process ``TrajectoryOptimizer`` taking a PI² step per condition from the samples.

    Args:
        kl_step: the per-step budget ε on KL(w_t ‖ uniform); at most log N can be spent.

        covariance_damping: exponent 1/damping on the covariance ratio (1: the bias-corrected
            weighted ML ratio; larger: slower shrinking, more exploration kept).
        min_cov_scale: Σ may shrink to at most this factor (and grow to at most its inverse) per
            step.

        tolerance: relative accuracy of the weight KL.

    ``optimize`` ignores ``epsilon`` and ``eta0`` (the LQR's trajectory KL budget and dual warm
    start): the budget here is the fixed per-step ``kl_step`` on the sample weights, which the
    LQR-FLM step-size rule (a prediction of the fitted model) has nothing to say about.  The
    samples must have been drawn from ``prev`` (true for LQR-FLM, whose reference is the
    sampling controller).
    """

    def __init__(self, kl_step: float = 1.0, covariance_damping: float = 2.0,
                 min_cov_scale: float = 0.5, tolerance: float = 0.05):
        if not kl_step > 0:
            raise ValueError(f"kl_step must be > 0, got {kl_step}")
        if not covariance_damping > 0:
            raise ValueError(f"covariance_damping must be > 0, got {covariance_damping}")
        if not 0 < min_cov_scale <= 1:
            raise ValueError(f"min_cov_scale must be in (0, 1], got {min_cov_scale}")
        self.kl_step = float(kl_step)
        self.covariance_damping = float(covariance_damping)
        self.min_cov_scale = float(min_cov_scale)
        self.tolerance = float(tolerance)

    @classmethod
    def from_config(cls, cfg) -> "PI2":
        return cls(cfg.pi2_kl_step, cfg.pi2_covariance_damping, cfg.pi2_min_cov_scale)

    def step(self, prev: LinearGaussianController, noise: np.ndarray, S: np.ndarray,
             base: Optional[LinearGaussianController] = None, eta_floor: Optional[np.ndarray] = None):
        """One PI² step on cost-to-go S (N, T) with whitened noise (N, T, dU).

        ``base`` (default ``prev``) is the controller whose k and Σ are moved; ``eta_floor`` (T,)
        a lower bound on the temperatures (PILQR).  Returns (controller, eta, weight KL,
        converged, bisections, Δk, s).
        """
        eta, w, kl_w, conv, it = solve_temperature(S, self.kl_step, self.tolerance)
        if eta_floor is not None:
            eta = np.maximum(eta, eta_floor)
            w = softmax_weights(S, eta)
            kl_w = weights_kl(w)
            conv = conv | (kl_w <= self.kl_step * (1 + self.tolerance))
        ctrl, dk, s = pi2_controller(base if base is not None else prev, noise, w,
                                     self.covariance_damping, self.min_cov_scale)
        return ctrl, eta, kl_w, conv, it, dk, s

    def optimize(self, dynamics: Sequence, costs, prev: Sequence[LinearGaussianController],
                 epsilon, eta0, samples=None, sample_costs=None) -> List[PI2Result]:
        M = len(prev)
        step_costs = check_samples(samples, sample_costs, M, "PI²")
        results = []
        for m in range(M):
            tr, p = samples[m], prev[m]
            noise = whitened_noise(p, tr.X, tr.U)
            ctrl, eta, kl_w, conv, it, dk, s = self.step(p, noise, cost_to_go(step_costs[m]))
            kl = float(feedforward_kl(p, dk, s).sum())
            mu, sigma = _marginals(dynamics[m], ctrl)
            results.append(PI2Result(ctrl, geometric_mean(eta), kl, self.kl_step * p.T,
                                     bool(conv.all()), it, mu, sigma, weight_kl=kl_w, etas=eta,
                                     cov_scale=s, pi2_epsilon=self.kl_step))
        return results
