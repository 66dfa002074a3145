"""KL-constrained LQR for time-varying linear-Gaussian controllers (LQR-FLM / MDGPS C-step).

Solves, per condition m (Levine & Abbeel 2014, eq. 2–4)::

    min_p  E_p[ Σ_t c(x_t, u_t) ]   s.t.  KL(p(τ) ‖ p̄(τ)) ≤ ε

through its Lagrangian: for a dual variable η the optimal p is the maximum-entropy LQR solution of
the surrogate cost  c/η − log p̄(u_t | x_t)  under the fitted dynamics; η is found by a bracketing
search in log space until KL(p ‖ p̄) is within a relative tolerance of ε.  p̄ is the previous local
controller (LQR-FLM) or the linearised global policy (MDGPS).

All passes are batched across conditions: arrays carry a leading condition axis M and the only
Python loop is the unavoidable one over t.  A non-positive-definite Q_uu marks that condition's η
as too small; η is raised and the pass retried, so the result is never NaN.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
from scipy.linalg.lapack import dpotrf as _potrf, dpotrs as _potrs

from .lin_gauss import LinearGaussianController, traj_kl

log = logging.getLogger(__name__)


@dataclass
class QuadraticCost:
    """Quadratic expansion of the cost, about zero, per time step.

    c_t(xu) ≈ ½ xuᵀ Cm_t xu + cv_tᵀ xu + cc_t with Cm (T, dX+dU, dX+dU), cv (T, dX+dU), cc (T,).
    """

    Cm: np.ndarray
    cv: np.ndarray
    cc: np.ndarray

    @staticmethod
    def from_derivatives(X: np.ndarray, U: np.ndarray, d) -> "QuadraticCost":
        """Average over N samples of the second-order expansion of ``d`` (a CostDerivatives with
        leading (N, T)) taken at each sample (X (N, T, dX), U (N, T, dU)), re-centred at zero."""
        N, T, dX = X.shape
        dU = U.shape[2]
        xu = np.concatenate([X, U], axis=2)                                   # (N, T, dXU)
        H = np.empty((N, T, dX + dU, dX + dU))
        H[..., :dX, :dX] = d.lxx
        H[..., dX:, dX:] = d.luu
        H[..., dX:, :dX] = d.lux
        H[..., :dX, dX:] = np.swapaxes(d.lux, -1, -2)
        g = np.concatenate([d.lx, d.lu], axis=2)
        Hxu = np.einsum("ntij,ntj->nti", H, xu)
        cv = g - Hxu
        cc = d.l - np.einsum("nti,nti->nt", g, xu) + 0.5 * np.einsum("nti,nti->nt", xu, Hxu)
        return QuadraticCost(H.mean(0), cv.mean(0), cc.mean(0))


@dataclass
class LQRResult:
    controller: LinearGaussianController
    eta: float
    kl: float           # achieved KL(p ‖ p̄) summed over t
    epsilon: float      # the constraint it was asked to meet
    converged: bool
    iterations: int
    mu: np.ndarray      # (T, dX+dU) state-action marginal means under the fitted dynamics
    sigma: np.ndarray   # (T, dX+dU, dX+dU)


def _stack(dyns, attr):
    return np.stack([getattr(d, attr) for d in dyns])


def state_marginals(Fm, fv, dyn_covar, x0mu, x0sigma, K, k, pol_covar):
    """State marginals N(μ_x,t, Σ_x,t) under the controllers, batched over M.

    x_{t+1} = A_t x_t + a_t + noise with the closed-loop A_t = F_x + F_u K_t, a_t = F_u k_t + f_t
    and noise covariance W_t = F_u Σ_t F_uᵀ + Σ_dyn,t; everything but the recursion is batched over
    t.  Shapes as in :func:`forward_pass`; returns mu_x (M, T, dX), sig_x (M, T, dX, dX).
    """
    M, T, dU, dX = K.shape
    Fx, Fu = Fm[..., :dX], Fm[..., dX:]
    A = Fx + Fu @ K                                                           # (M, T, dX, dX)
    AT = np.swapaxes(A, -1, -2)
    a = (Fu @ k[..., None])[..., 0] + fv
    W = Fu @ pol_covar @ np.swapaxes(Fu, -1, -2) + dyn_covar
    mu_x = np.empty((M, T, dX, 1))
    sig_x = np.empty((M, T, dX, dX))
    mu_x[:, 0, :, 0] = x0mu
    sig_x[:, 0] = x0sigma
    a = a[..., None]
    for t in range(T - 1):
        s = np.matmul(np.matmul(A[:, t], sig_x[:, t]), AT[:, t])
        s += W[:, t]
        sig_x[:, t + 1] = s
        m = np.matmul(A[:, t], mu_x[:, t])
        m += a[:, t]
        mu_x[:, t + 1] = m
    return mu_x[..., 0], sig_x


def forward_pass(Fm, fv, dyn_covar, x0mu, x0sigma, K, k, pol_covar):
    """State-action marginals of linear-Gaussian controllers under linear-Gaussian dynamics.

    Batched over M: Fm (M, T, dX, dXU), fv (M, T, dX), dyn_covar (M, T, dX, dX), x0mu (M, dX),
    x0sigma (M, dX, dX), K (M, T, dU, dX), k (M, T, dU), pol_covar (M, T, dU, dU).
    Returns mu (M, T, dXU), sigma (M, T, dXU, dXU).
    """
    M, T, dU, dX = K.shape
    mu_x, sig_x = state_marginals(Fm, fv, dyn_covar, x0mu, x0sigma, K, k, pol_covar)
    # u_t = K_t x_t + k_t + ε_t:  Σ_ux = K Σ_x,  Σ_uu = K Σ_x Kᵀ + Σ_t
    mu = np.empty((M, T, dX + dU))
    mu[..., :dX] = mu_x
    mu[..., dX:] = (K @ mu_x[..., None])[..., 0] + k
    KS = K @ sig_x
    sigma = np.empty((M, T, dX + dU, dX + dU))
    sigma[..., :dX, :dX] = sig_x
    sigma[..., dX:, :dX] = KS
    sigma[..., :dX, dX:] = np.swapaxes(KS, -1, -2)
    sigma[..., dX:, dX:] = KS @ np.swapaxes(K, -1, -2) + pol_covar
    return mu, sigma


def surrogate_terms(Fm, fv, Cm, cv, prevK, prevk, prev_prec):
    """The η-independent pieces of the backward pass, batched over (M, T).

    Returns Caug = [C | c] (M, T, dXU, dXU+1), the cost expansion; PKL, the same for
    −log p̄(u|x) = ½ (u − K̄x − k̄)ᵀ P̄ (u − K̄x − k̄) + const; Faug = [[F, f], [0, 1]]
    (M, T, dX+1, dXU+1); and Fᵀ (M, T, dXU, dX).  The surrogate cost is Caug/η + PKL.
    """
    M, T, dX, dXU = Fm.shape
    Caug = np.concatenate([Cm, cv[..., None]], axis=-1)
    PKL = np.zeros_like(Caug)
    PK = prev_prec @ prevK                                                     # (M, T, dU, dX)
    Pk = (prev_prec @ prevk[..., None])[..., 0]                               # (M, T, dU)
    KT = np.swapaxes(prevK, -1, -2)
    PKL[..., :dX, :dX] = KT @ PK
    PKL[..., :dX, dX:dXU] = -np.swapaxes(PK, -1, -2)
    PKL[..., dX:, :dX] = -PK
    PKL[..., dX:, dX:dXU] = prev_prec
    PKL[..., :dX, dXU] = (KT @ Pk[..., None])[..., 0]
    PKL[..., dX:, dXU] = -Pk
    Faug = np.zeros((M, T, dX + 1, dXU + 1))
    Faug[:, :, :dX, :dXU] = Fm
    Faug[:, :, :dX, dXU] = fv
    Faug[:, :, dX, dXU] = 1.0
    return Caug, PKL, Faug, np.swapaxes(Fm, -1, -2)


def backward_pass(Fm, fv, Cm, cv, prevK, prevk, prev_prec, eta):
    """Maximum-entropy LQR backward pass on the surrogate cost c/η − log p̄, batched over M.

    Cm (M, T, dXU, dXU), cv (M, T, dXU) the cost expansion; prevK, prevk, prev_prec (p̄'s K, k and
    Σ̄⁻¹); eta (M,).  Returns K, k, pol_covar, chol (lower), inv_pol_covar and ``ok`` (M,) bool:
    False where some Q_uu was not positive definite or a result was not finite (those entries hold
    placeholders and must not be used).
    """
    return _backward(*surrogate_terms(Fm, fv, Cm, cv, prevK, prevk, prev_prec), eta)


def _backward(Caug, PKL, Faug, FT, eta):
    """:func:`backward_pass` on precomputed :func:`surrogate_terms`.

    The value function is carried as an augmented matrix [V | v] (dX, dX+1) and the Q function as
    [Q | q] (dXU, dXU+1), so each step is a handful of batched matmuls.
    """
    M, T, dXU, dX = FT.shape
    dU = dXU - dX
    inv_eta = (1.0 / eta)[:, None, None]
    Kk = np.empty((M, T, dU, dX + 1))                                         # [K_t | k_t]
    Quu_all = np.empty((M, T, dU, dU))
    ok = np.ones(M, dtype=bool)
    Vaug = None                                                               # [V | v], (M, dX, dX+1)
    eye = np.eye(dU)
    cols = np.r_[0:dX, dXU]                                                   # [x | 1] columns of Q
    for t in range(T - 1, -1, -1):
        Q = Caug[:, t] * inv_eta
        Q += PKL[:, t]
        if Vaug is not None:
            # Fᵀ V F and Fᵀ (V f + v), as the top rows of Fᵀ [V | v] F_aug
            Q += np.matmul(FT[:, t], np.matmul(Vaug, Faug[:, t]))
        Quu = Q[:, dX:, dX:dXU]          # LAPACK reads its lower triangle; symmetrised below
        Quu_all[:, t] = Quu
        Q_ux = Q[:, dX:, cols]                                                # [Q_ux | q_u]
        G = Kk[:, t]
        # Cholesky (the positive-definiteness test) and its solve, straight from LAPACK: for 7x7
        # systems numpy's batched gufuncs cost several times more in call overhead than the work
        for m in range(M):
            if ok[m]:
                c, info = _potrf(Quu[m], lower=1, clean=0)
                if info == 0:
                    G[m], info = _potrs(c, Q_ux[m], lower=1)
                    G[m] *= -1.0                                              # [K | k] = −Q_uu⁻¹ [Q_ux | q_u]
                if info != 0:
                    ok[m] = False
            if not ok[m]:
                G[m] = 0.0                                                    # placeholder
                Quu_all[m, t] = eye
        # [V | v] = [Q_xx | q_x] + Q_xu [K | k]
        Vaug = Q[:, :dX, cols]
        Vaug += np.matmul(Q[:, :dX, dX:dXU], G)
        # (V stays symmetric up to rounding; Q_uu is symmetrised after the loop and LAPACK only
        # reads its lower triangle, so no per-step symmetrisation is needed)
    K = Kk[..., :dX]
    k = Kk[..., dX]
    # Σ_t = Q_uu⁻¹ with its lower Cholesky factor, for all t at once
    finite = np.isfinite(Kk).all(axis=(1, 2, 3)) & np.isfinite(Quu_all).all(axis=(1, 2, 3))
    ok &= finite
    Quu_all[~ok] = eye
    Quu_all = 0.5 * (Quu_all + np.swapaxes(Quu_all, -1, -2))
    pol_covar = np.linalg.inv(Quu_all)
    pol_covar = 0.5 * (pol_covar + np.swapaxes(pol_covar, -1, -2))
    chol = np.zeros_like(pol_covar)
    try:
        chol[:] = np.linalg.cholesky(pol_covar)
    except np.linalg.LinAlgError:
        for m in np.flatnonzero(ok):
            try:
                chol[m] = np.linalg.cholesky(pol_covar[m])
            except np.linalg.LinAlgError:
                ok[m] = False
    return np.ascontiguousarray(K), np.ascontiguousarray(k), pol_covar, chol, Quu_all, ok


def expected_cost(mu: np.ndarray, sigma: np.ndarray, cost: QuadraticCost) -> float:
    """E[Σ_t c_t] under Gaussian state-action marginals mu (T, dXU), sigma (T, dXU, dXU)."""
    quad = 0.5 * np.einsum("ti,tij,tj->t", mu, cost.Cm, mu)
    return float(np.sum(quad + np.einsum("ti,ti->t", mu, cost.cv) + cost.cc
                        + 0.5 * np.einsum("tij,tji->t", cost.Cm, sigma)))


def estimate_cost(controller: LinearGaussianController, dynamics, cost: QuadraticCost) -> float:
    """Expected total cost of ``controller`` under ``dynamics`` and the quadratic ``cost``."""
    mu, sigma = forward_pass(dynamics.Fm[None], dynamics.fv[None], dynamics.dyn_covar[None],
                             dynamics.x0mu[None], dynamics.x0sigma[None], controller.K[None],
                             controller.k[None], controller.pol_covar[None])
    return expected_cost(mu[0], sigma[0], cost)


def kl_constrained_lqr(dynamics: Sequence, costs: Sequence[QuadraticCost],
                       prev: Sequence[LinearGaussianController], epsilon: Sequence[float],
                       eta0: Optional[Sequence[float]] = None, *, tolerance: float = 0.1,
                       max_iterations: int = 40, min_eta: float = 1e-8,
                       max_eta: float = 1e16) -> List[LQRResult]:
    """New controllers p_m with KL(p_m ‖ prev_m) ≈ epsilon_m (total over t), batched over M.

    ``dynamics[m]`` has Fm, fv, dyn_covar, x0mu, x0sigma; ``epsilon`` may be ``inf`` for an
    unconstrained LQR step (η = min_eta).  The dual search brackets η in log space and uses secant
    steps on log KL(log η) inside the bracket; a condition is done when
    |KL − ε| ≤ tolerance·ε, or when η = min_eta and KL < ε (inactive constraint).
    """
    M = len(dynamics)
    Fm, fv, dyn_covar = _stack(dynamics, "Fm"), _stack(dynamics, "fv"), _stack(dynamics, "dyn_covar")
    x0mu, x0sigma = _stack(dynamics, "x0mu"), _stack(dynamics, "x0sigma")
    Cm = np.stack([c.Cm for c in costs])
    cv = np.stack([c.cv for c in costs])
    terms = surrogate_terms(Fm, fv, Cm, cv, _stack(prev, "K"), _stack(prev, "k"),
                            _stack(prev, "inv_pol_covar"))
    eps = np.asarray(epsilon, dtype=float)
    eta = np.clip(np.ones(M) if eta0 is None else np.asarray(eta0, float), min_eta, max_eta)
    eta = np.where(np.isinf(eps), min_eta, eta)
    lo = np.full(M, np.nan)          # largest η known too small (KL too big or non-PD)
    hi = np.full(M, np.nan)          # smallest η known too large (KL too small)
    kl_lo = np.full(M, np.nan)
    kl_hi = np.full(M, np.nan)
    best: List[Optional[tuple]] = [None] * M   # (score, result tuple)
    hist: List[list] = [[] for _ in range(M)]   # (log η, log KL) of finite evaluations
    done = np.zeros(M, dtype=bool)
    iters = np.zeros(M, dtype=int)
    converged = np.zeros(M, dtype=bool)
    log_min, log_max = np.log(min_eta), np.log(max_eta)

    for _ in range(max_iterations):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        iters[act] += 1
        with np.errstate(over="ignore", invalid="ignore"):  # failures are detected and handled
            K, k, S, L, P, ok = _backward(*(a[act] for a in terms), eta[act])
            S_safe = S.copy()
            S_safe[~ok] = np.eye(S.shape[-1])      # placeholders; those conditions are not used
            mu, sigma = state_marginals(Fm[act], fv[act], dyn_covar[act], x0mu[act],
                                        x0sigma[act], K, k, S_safe)
        for j, m in enumerate(act):
            le = np.log(eta[m])
            if not ok[j] or not (np.isfinite(mu[j]).all() and np.isfinite(sigma[j]).all()):
                lo[m] = le if np.isnan(lo[m]) else max(lo[m], le)
                kl_lo[m] = np.inf
                if le >= log_max - 1e-9:
                    done[m] = True
                    continue
            else:
                ctrl = LinearGaussianController(K[j], k[j], S[j], L[j], P[j])
                kl = float(traj_kl(mu[j], sigma[j], ctrl, prev[m]).sum())
                if not np.isfinite(kl):
                    kl = np.inf
                res = (ctrl, float(eta[m]), kl)
                if np.isfinite(kl) and kl > 0:
                    hist[m].append((le, np.log(kl)))
                # keep the feasible result closest to ε, else the smallest-KL one
                feasible = kl <= eps[m] * (1 + tolerance)
                score = (0, abs(kl - eps[m])) if feasible else (1, kl)
                if best[m] is None or score < best[m][0]:
                    best[m] = (score, res)
                if np.isinf(eps[m]):
                    converged[m] = done[m] = True
                    continue
                if abs(kl - eps[m]) <= tolerance * eps[m] or (kl < eps[m] and le <= log_min + 1e-9):
                    converged[m] = done[m] = True
                    best[m] = (score, res)
                    continue
                if kl > eps[m]:
                    if np.isnan(lo[m]) or le > lo[m]:
                        lo[m], kl_lo[m] = le, kl
                    if le >= log_max - 1e-9:
                        done[m] = True
                        continue
                else:
                    if np.isnan(hi[m]) or le < hi[m]:
                        hi[m], kl_hi[m] = le, kl
            # next η for condition m: secant on log KL(log η) (KL falls monotonically with η)
            nxt = _next_log_eta(lo[m], kl_lo[m], hi[m], kl_hi[m], np.log(eps[m]), hist[m])
            if not np.isnan(lo[m]) and not np.isnan(hi[m]) and hi[m] - lo[m] < 1e-6:
                done[m] = True
            eta[m] = float(np.exp(np.clip(nxt, log_min, log_max)))

    chosen = []
    for m in range(M):
        if best[m] is None:
            log.warning("LQR: condition %d: no positive-definite solution up to eta=%.3g; "
                        "keeping the previous controller", m, max_eta)
            chosen.append((prev[m].copy(), float(max_eta), 0.0))
        else:
            chosen.append(best[m][1])
            if not converged[m]:
                log.warning("LQR: condition %d: dual search stopped at KL %.4g for epsilon %.4g "
                            "(eta %.3g) after %d iterations", m, chosen[m][2], eps[m],
                            chosen[m][1], iters[m])
    mu, sigma = forward_pass(Fm, fv, dyn_covar, x0mu, x0sigma, _stack([c[0] for c in chosen], "K"),
                             _stack([c[0] for c in chosen], "k"),
                             _stack([c[0] for c in chosen], "pol_covar"))
    return [LQRResult(c, e, kl, float(eps[m]), bool(converged[m]) and best[m] is not None,
                      int(iters[m]), mu[m], sigma[m]) for m, (c, e, kl) in enumerate(chosen)]


_MIN_STEP, _MAX_STEP = 0.3, 3 * np.log(10.0)


def _next_log_eta(lo, kl_lo, hi, kl_hi, log_eps, hist=()):
    """Next log η of the dual search from the bracket (lo: η too small, hi: η too large).

    Inside a bracket: the secant of log KL against log η, kept within the middle 80 % of the
    bracket, else bisection.  With one side only: the secant through the last two evaluations
    (``hist``, a list of (log η, log KL)) when its slope is negative, else a step assuming slope −1;
    the step is clamped to [0.3, 3 decades].  A non-PD failure (KL = inf) steps up 3 decades."""
    if not np.isnan(lo) and not np.isnan(hi):
        nxt = 0.5 * (lo + hi)
        if np.isfinite(kl_lo) and kl_lo > 0 and kl_hi > 0:
            a, b = np.log(kl_lo), np.log(kl_hi)
            if a != b:
                guess = lo + (log_eps - a) * (hi - lo) / (b - a)
                margin = 0.1 * (hi - lo)
                if lo + margin < guess < hi - margin:
                    nxt = guess
        return nxt
    if not np.isnan(lo) and not np.isfinite(kl_lo):
        return lo + _MAX_STEP
    here, log_kl = (lo, np.log(kl_lo)) if not np.isnan(lo) else (hi, np.log(max(kl_hi, 1e-300)))
    slope = -1.0
    if len(hist) >= 2:
        (e1, k1), (e2, k2) = hist[-2], hist[-1]
        if e1 != e2 and (k2 - k1) / (e2 - e1) < 0:
            slope = (k2 - k1) / (e2 - e1)
    step = float(np.clip(abs((log_eps - log_kl) / slope), _MIN_STEP, _MAX_STEP))
    return here + step if not np.isnan(lo) else here - step
