"""KL-constrained LQR for time-varying linear-Gaussian controllers (LQR-FLM / MDGPS C-step).

Solves, per condition m (Levine & Abbeel 2014, eq. 2–4)::

    min_p  E_p[ Σ_t c(x_t, u_t) ]   s.t.  KL(p(τ) ‖ p̄(τ)) ≤ ε

through its Lagrangian: for a dual variable η the optimal p is the maximum-entropy LQR solution of
the surrogate cost  c/η − log p̄(u_t | x_t)  under the fitted dynamics, and η is searched until
KL(p ‖ p̄) is within a relative tolerance of ε.  p̄ is the previous local controller (LQR-FLM) or
the linearised global policy (MDGPS).

One evaluation of KL(η) — a *pass* — is a backward pass (the Riccati recursion of the surrogate
cost), a forward pass (the state marginals of the new controller under the fitted dynamics) and the
KL from those marginals.  The dual search (:class:`_DualSearch`) needs few passes: it models
log KL as a function of log η — a safeguarded secant / parabola through the evaluations nearest to
the target, bracketed and with bisection as the fall-back — rather than stepping by fixed factors.

The recursions are Python loops over t of 2-D BLAS / LAPACK calls, one condition at a time: at
these sizes (dX ≈ 32, dU ≈ 7) the call overhead of numpy's batched matmul exceeds the arithmetic,
so a condition axis inside the time loop would not pay for itself.  The public functions
(:func:`backward_pass`, :func:`forward_pass`, :func:`kl_constrained_lqr`) take and return arrays
batched over conditions M.  A non-positive-definite Q_uu marks η as too small; η is raised and the
pass retried, so the result is never NaN.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
from scipy.linalg.blas import dgemm as _gemm
from scipy.linalg.lapack import dposv as _posv

from .lin_gauss import LinearGaussianController

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
    iterations: int     # passes (backward + forward) the dual search took
    mu: np.ndarray      # (T, dX+dU) state-action marginal means under the fitted dynamics
    sigma: np.ndarray   # (T, dX+dU, dX+dU)


# --- one condition: the recursions ------------------------------------------------------------

class _Scratch:
    """Work arrays for one condition's passes, and lists of their per-time-step views.

    A cold update touches ~10 MB of arrays of T × dX × dX size; allocated afresh they cost a page
    fault per 4 kB (about 2 500 faults, ~5 µs each on a VM: a fifth to a third of the update),
    because the allocator returns freed blocks this large to the OS.  So one set is kept per
    thread (:func:`_scratch`) and reused across passes, conditions and calls; everything handed
    to callers is a fresh array.  The loops over t index these lists of views (a list lookup, not
    an array slice per step).  The state marginals are double-buffered: the best pass so far keeps
    its buffer while the next pass fills the other.
    """

    def __init__(self, T: int, dX: int, dU: int):
        self.shape = (T, dX, dU)
        n = dX + dU + 1                                # columns [x | 1 | u]
        self.C, self.PKL, self.Q = (np.empty((T, dX + dU, n)) for _ in range(3))
        self.Faug = np.zeros((T, dX + 1, n))
        self.Faug[:, dX, dX] = 1.0
        self.X = np.empty((T, dU, dX + 1))
        self.A, self.W, self.a = np.empty((T, dX, dX)), np.empty((T, dX, dX)), np.empty((T, dX))
        self.mu = (np.empty((T, dX)), np.empty((T, dX)))
        self.sig = (np.empty((T, dX, dX)), np.empty((T, dX, dX)))
        self.nbytes = sum(a.nbytes for a in (self.C, self.PKL, self.Q, self.Faug, self.X, self.A,
                                             self.W, self.a, *self.mu, *self.sig))
        Qt = list(self.Q)
        self.Qt, self.Faug_t, self.X_t = Qt, list(self.Faug), list(self.X)
        self.Quu = [q[dX:, dX + 1:] for q in Qt]
        self.Qux = [q[dX:, :dX + 1] for q in Qt]       # [Q_ux | q_u]
        self.Qxx = [q[:dX, :dX + 1] for q in Qt]       # [Q_xx | q_x]
        self.Qxu = [q[:dX, dX + 1:] for q in Qt]
        self.A_t, self.W_t, self.a_t = list(self.A), list(self.W), list(self.a)
        self.AT_t = [A.T for A in self.A_t]
        self.mu_t = tuple(list(m) for m in self.mu)
        self.sig_t = tuple(list(s) for s in self.sig)


_SCRATCH = threading.local()
_SCRATCH_MAX_BYTES = 64 << 20       # larger problems allocate per call rather than keep that much


def _scratch(T: int, dX: int, dU: int) -> _Scratch:
    """This thread's :class:`_Scratch` for the shape (the last one used is kept)."""
    s = getattr(_SCRATCH, "s", None)
    if s is None or s.shape != (T, dX, dU):
        s = _Scratch(T, dX, dU)
        _SCRATCH.s = s if s.nbytes <= _SCRATCH_MAX_BYTES else None
    return s


def _surrogate(w: _Scratch, Fm, fv, Cm, cv, prevK, prevk, prev_prec):
    """The η-independent pieces of the backward pass for one condition, into ``w``.

    Columns follow the augmented vector [x; 1; u], so that [Q_ux | q_u] and [Q_xx | q_x] are
    contiguous column blocks of Q: w.C = [C_·x | c | C_·u] (T, dXU, dXU+1) is the cost expansion
    with rows [x; u]; w.PKL the same for −log p̄(u|x) = ½ (u − K̄x − k̄)ᵀ P̄ (u − K̄x − k̄) + const;
    and w.Faug (T, dX+1, dXU+1) maps [x; 1; u] to [x'; 1].  The surrogate cost is C/η + PKL.
    Shapes as in :func:`backward_pass` without the leading M.
    """
    C, PKL, Faug = w.C, w.PKL, w.Faug
    dX = Fm.shape[1]
    C[..., :dX] = Cm[..., :dX]
    C[..., dX] = cv
    C[..., dX + 1:] = Cm[..., dX:]
    PK = prev_prec @ prevK                                                     # (T, dU, dX)
    Pk = (prev_prec @ prevk[..., None])[..., 0]                               # (T, dU)
    KT = np.swapaxes(prevK, -1, -2)
    np.matmul(KT, PK, out=PKL[:, :dX, :dX])
    PKL[:, :dX, dX] = (KT @ Pk[..., None])[..., 0]
    np.negative(np.swapaxes(PK, -1, -2), out=PKL[:, :dX, dX + 1:])
    np.negative(PK, out=PKL[:, dX:, :dX])
    np.negative(Pk, out=PKL[:, dX:, dX])
    PKL[:, dX:, dX + 1:] = prev_prec
    Faug[:, :dX, :dX] = Fm[..., :dX]
    Faug[:, :dX, dX] = fv
    Faug[:, :dX, dX + 1:] = Fm[..., dX:]


def _backward(w: _Scratch, FT, eta):
    """Maximum-entropy LQR backward pass on the surrogate cost C/η + PKL in ``w``, one condition.

    ``FT``: the F_tᵀ (dXU, dX), a list over t.  The value function is carried as [V | v]
    (dX, dX+1), so each step is two matmuls for Fᵀ [V | v] F_aug, one LAPACK call that
    factorises Q_uu (the positive-definiteness test) and solves with it, and one BLAS call for the
    next [V | v].  Returns K, k, pol_covar Σ_t = Q_uu⁻¹, its lower Cholesky factor and Q_uu, or
    None where some Q_uu is not positive definite or a result is not finite.
    """
    T, dU, dX1 = w.X.shape
    dX = dX1 - 1
    np.multiply(w.C, 1.0 / eta, out=w.Q)
    w.Q += w.PKL
    Qt, Quu, Qux, Qxx, Qxu, Faug, X = w.Qt, w.Quu, w.Qux, w.Qxx, w.Qxu, w.Faug_t, w.X_t
    V = None
    for t in range(T - 1, -1, -1):
        if V is not None:
            Qt[t] += FT[t].dot(V.dot(Faug[t]))
        # Q_uu⁻¹ [Q_ux | q_u] = −[K_t | k_t]; LAPACK reads Q_uu's lower triangle
        _, x, info = _posv(Quu[t], Qux[t], lower=1)
        if info != 0:
            return None
        X[t][...] = x
        # [V | v] = [Q_xx | q_x] + Q_xu [K | k], one BLAS call  (V is symmetric up to rounding;
        # Q_uu is symmetrised below and LAPACK reads one triangle: no per-step symmetrisation)
        V = _gemm(-1.0, Qxu[t], x, 1.0, Qxx[t])
    Quu = w.Q[:, dX:, dX + 1:]
    if not (np.isfinite(w.X).all() and np.isfinite(Quu).all()):
        return None
    P = 0.5 * (Quu + np.swapaxes(Quu, -1, -2))
    S = np.linalg.inv(P)
    S = 0.5 * (S + np.swapaxes(S, -1, -2))
    try:
        L = np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        return None
    return -w.X[..., :dX], -w.X[..., dX], S, L, P


def _closed_loop(Fx, Fu, fv, dyn_covar, K, k, pol_covar, A, a, W):
    """Fill A, a, W: x_{t+1} = A_t x_t + a_t + noise under u = K x + k + N(0, Σ), A_t = F_x +
    F_u K_t, a_t = F_u k_t + f_t, noise covariance W_t = F_u Σ_t F_uᵀ + Σ_dyn,t, batched over t."""
    np.matmul(Fu, K, out=A)
    A += Fx
    np.matmul(Fu, k[..., None], out=a[..., None])
    a += fv
    np.matmul(Fu @ pol_covar, np.swapaxes(Fu, -1, -2), out=W)
    W += dyn_covar


def _marginals(A, AT, a, W, x0mu, x0sigma, mu, sig):
    """Fill the state marginals N(mu[t], sig[t]) of x_{t+1} = A_t x_t + a_t + N(0, W_t), one
    condition.  Each argument is indexed by t: arrays over t or lists of their views; AT[t] =
    A[t]ᵀ."""
    mu[0][...] = x0mu
    sig[0][...] = x0sigma
    for t in range(len(mu) - 1):
        At = A[t]
        np.dot(At.dot(sig[t]), AT[t], out=sig[t + 1])
        sig[t + 1] += W[t]
        np.dot(At, mu[t], out=mu[t + 1])
        mu[t + 1] += a[t]


def _kl(mu_x, sig_x, K, k, pol_covar, chol, ref):
    """Σ_t E_{x_t} KL(p(u|x) ‖ p̄(u|x)): :func:`traj_kl` of (K, k, Σ) against p̄ from the state
    marginals, with ``ref`` = (K̄, k̄, Σ̄⁻¹, log det Σ̄) precomputed; matmuls instead of einsum
    contractions."""
    prevK, prevk, prev_prec, logdet_prev = ref
    dK = prevK - K                                                            # (T, dU, dX)
    md = (dK @ mu_x[..., None])[..., 0] + (prevk - k)                         # mean difference
    quad = np.einsum("tu,tu->t", md, (prev_prec @ md[..., None])[..., 0])
    trace_x = np.einsum("tux,tux->t", dK @ sig_x, prev_prec @ dK)             # tr(P̄ ΔK Σ_x ΔKᵀ)
    trace_u = np.einsum("tuv,tuv->t", prev_prec, pol_covar)                   # tr(P̄ Σ)
    logdet = 2 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
    kl = 0.5 * (trace_u + quad + trace_x - K.shape[1] + logdet_prev - logdet)
    return float(np.maximum(kl, 0.0).sum())


def _state_action(mu_x, sig_x, K, k, pol_covar):
    """State-action marginals from the state marginals: u = K x + k + N(0, Σ) gives
    Σ_ux = K Σ_x and Σ_uu = K Σ_x Kᵀ + Σ.  Any leading axes (M, T) or (T,)."""
    dU, dX = K.shape[-2:]
    mu = np.empty(mu_x.shape[:-1] + (dX + dU,))
    mu[..., :dX] = mu_x
    mu[..., dX:] = (K @ mu_x[..., None])[..., 0] + k
    KS = K @ sig_x
    sigma = np.empty(sig_x.shape[:-2] + (dX + dU, dX + dU))
    sigma[..., :dX, :dX] = sig_x
    sigma[..., dX:, :dX] = KS
    sigma[..., :dX, dX:] = np.swapaxes(KS, -1, -2)
    sigma[..., dX:, dX:] = KS @ np.swapaxes(K, -1, -2) + pol_covar
    return mu, sigma


# --- the batched public passes ----------------------------------------------------------------

def state_marginals(Fm, fv, dyn_covar, x0mu, x0sigma, K, k, pol_covar):
    """State marginals N(μ_x,t, Σ_x,t) under the controllers, batched over M.

    x_{t+1} = A_t x_t + a_t + noise with the closed-loop A_t = F_x + F_u K_t, a_t = F_u k_t + f_t
    and noise covariance W_t = F_u Σ_t F_uᵀ + Σ_dyn,t.  Shapes as in :func:`forward_pass`; returns
    mu_x (M, T, dX), sig_x (M, T, dX, dX).
    """
    M, T, dU, dX = K.shape
    mu_x = np.empty((M, T, dX))
    sig_x = np.empty((M, T, dX, dX))
    A, a, W = np.empty((T, dX, dX)), np.empty((T, dX)), np.empty((T, dX, dX))
    for m in range(M):
        _closed_loop(Fm[m, ..., :dX], Fm[m, ..., dX:], fv[m], dyn_covar[m], K[m], k[m],
                     pol_covar[m], A, a, W)
        _marginals(A, np.swapaxes(A, 1, 2), a, W, x0mu[m], x0sigma[m], mu_x[m], sig_x[m])
    return mu_x, sig_x


def forward_pass(Fm, fv, dyn_covar, x0mu, x0sigma, K, k, pol_covar):
    """State-action marginals of linear-Gaussian controllers under linear-Gaussian dynamics.

    Batched over M: Fm (M, T, dX, dXU), fv (M, T, dX), dyn_covar (M, T, dX, dX), x0mu (M, dX),
    x0sigma (M, dX, dX), K (M, T, dU, dX), k (M, T, dU), pol_covar (M, T, dU, dU).
    Returns mu (M, T, dXU), sigma (M, T, dXU, dXU).
    """
    mu_x, sig_x = state_marginals(Fm, fv, dyn_covar, x0mu, x0sigma, K, k, pol_covar)
    return _state_action(mu_x, sig_x, K, k, pol_covar)


def backward_pass(Fm, fv, Cm, cv, prevK, prevk, prev_prec, eta):
    """Maximum-entropy LQR backward pass on the surrogate cost c/η − log p̄, batched over M.

    Fm (M, T, dX, dXU), fv (M, T, dX); Cm (M, T, dXU, dXU), cv (M, T, dXU) the cost expansion;
    prevK, prevk, prev_prec (p̄'s K, k and Σ̄⁻¹); eta (M,).  Returns K, k, pol_covar, chol (lower),
    inv_pol_covar and ``ok`` (M,) bool: False where some Q_uu was not positive definite or a result
    was not finite (those entries hold placeholders — zero gains, identity covariances — and must
    not be used).
    """
    M, T, dX, dXU = Fm.shape
    dU = dXU - dX
    K, k = np.zeros((M, T, dU, dX)), np.zeros((M, T, dU))
    S, L, P = (np.broadcast_to(np.eye(dU), (M, T, dU, dU)).copy() for _ in range(3))
    ok = np.zeros(M, dtype=bool)
    w = _Scratch(T, dX, dU)
    for m in range(M):
        _surrogate(w, Fm[m], fv[m], Cm[m], cv[m], prevK[m], prevk[m], prev_prec[m])
        out = _backward(w, list(np.swapaxes(Fm[m], -1, -2)), float(eta[m]))
        if out is not None:
            K[m], k[m], S[m], L[m], P[m] = out
            ok[m] = True
    return K, k, S, L, P, ok


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


# --- the dual search ----------------------------------------------------------------------------

@dataclass
class _Pass:
    """One evaluation of the dual function's constraint: the controller for η and its KL."""
    eta: float
    K: np.ndarray
    k: np.ndarray
    pol_covar: np.ndarray
    chol: np.ndarray
    inv_pol_covar: np.ndarray
    mu_x: np.ndarray     # views into a _Scratch buffer
    sig_x: np.ndarray
    kl: float
    buf: int             # which of the _Scratch marginal buffers mu_x / sig_x live in


class _Condition:
    """One condition of :func:`kl_constrained_lqr`: its η-independent arrays (in this thread's
    :class:`_Scratch`) and :meth:`evaluate`, one pass at a given η."""

    def __init__(self, dyn, cost: QuadraticCost, prev: LinearGaussianController):
        T, dX, dXU = dyn.Fm.shape
        self.w = w = _scratch(T, dX, dXU - dX)
        self.Fm, self.fv, self.dyn_covar = dyn.Fm, dyn.fv, dyn.dyn_covar
        self.x0mu, self.x0sigma = dyn.x0mu, dyn.x0sigma
        self.Fx, self.Fu = dyn.Fm[..., :dX], dyn.Fm[..., dX:]
        self.FT = list(np.swapaxes(dyn.Fm, -1, -2))
        _surrogate(w, dyn.Fm, dyn.fv, cost.Cm, cost.cv, prev.K, prev.k, prev.inv_pol_covar)
        logdet_prev = 2 * np.log(np.diagonal(prev.chol_pol_covar, axis1=-2, axis2=-1)).sum(-1)
        self.ref = (prev.K, prev.k, prev.inv_pol_covar, logdet_prev)
        self.free = 0                        # the marginal buffer the next pass may fill

    def evaluate(self, eta: float) -> Optional[_Pass]:
        """Backward pass, forward pass and KL at η; None if the backward pass failed (non-PD
        Q_uu) or something was not finite.  A non-finite KL is reported as inf."""
        w, b = self.w, self.free
        out = _backward(w, self.FT, eta)
        if out is None:
            return None
        K, k, S, L, P = out
        _closed_loop(self.Fx, self.Fu, self.fv, self.dyn_covar, K, k, S, w.A, w.a, w.W)
        _marginals(w.A_t, w.AT_t, w.a_t, w.W_t, self.x0mu, self.x0sigma, w.mu_t[b], w.sig_t[b])
        mu_x, sig_x = w.mu[b], w.sig[b]
        if not (np.isfinite(mu_x).all() and np.isfinite(sig_x).all()):
            return None
        kl = _kl(mu_x, sig_x, K, k, S, L, self.ref)
        return _Pass(eta, K, k, S, L, P, mu_x, sig_x, kl if np.isfinite(kl) else np.inf, b)

    def keep(self, p: _Pass) -> None:
        """Keep ``p``'s marginals: later passes fill the other buffer."""
        self.free = 1 - p.buf


# Steps of the dual search, in natural-log units of η.  The first step has no slope to go by.  It
# assumes d log KL / d log η = −1 when lowering η: the slope lies between 0 and −2 (KL ∝ η⁻² for
# large η), so that step is at most twice too long.  When raising η it assumes −0.5: there the
# curve is often much flatter than −1 (−0.2 to −0.5 on the benchmark systems, which are far from
# their previous controllers), and a slope of −1 would cost extra passes to climb it.
_SLOPE_UP, _SLOPE_DOWN = -0.5, -1.0
_MAX_UP, _MAX_DOWN = 10.0, 3 * np.log(10.0)     # at most 4.3 decades up, 3 down, per step
_MIN_STEP = 0.01
_FAIL_STEP = 3 * np.log(10.0)                   # after a non-PD pass with nothing better known
_SLOPE_RANGE = (-4.0, -0.05)                    # secant slopes are clamped to this


class _DualSearch:
    """The search for log η with KL(η) = ε, one condition.

    KL falls monotonically as η grows, and log KL is a smooth, roughly sigmoid function of log η:
    flat where the cost dominates, slope → −2 (KL ∝ η⁻²) where the KL term does.  Each pass adds
    a point (u, g) with u = log η and g = log KL − log ε (+inf for a failed pass, −inf for KL = 0).
    Points with g > 0 (η too small) and g < 0 (η too large) bracket the root: lo < root < hi.

    The next u is the root of a model fitted to the finite points nearest to the target
    (smallest |g|):

    * one point: a straight line of assumed slope (see ``_SLOPE_UP`` / ``_SLOPE_DOWN``);
    * two or more: the secant through the best two, slope clamped to ``_SLOPE_RANGE``;
    * bracketed by finite ends and a third point: the parabola through the bracket ends and the
      best other point, where it has one falling root inside the bracket (it follows the
      curvature of log KL, which secants under- or overshoot);

    safeguarded like Brent's method: inside a bracket the step must land strictly inside it and
    the best |g| must halve at least every other step, otherwise the bracket is bisected; outside
    a bracket a step is capped (``_MAX_UP`` / ``_MAX_DOWN``) and, after failed passes only, is
    ``_FAIL_STEP`` up.  :meth:`next` returns None when there is nothing new to try.
    """

    def __init__(self, log_eps: float, log_min: float, log_max: float):
        self.log_eps, self.log_min, self.log_max = log_eps, log_min, log_max
        self.u: List[float] = []
        self.g: List[float] = []
        self._best = np.inf          # smallest finite |g| so far
        self._slow = 0               # bracketed steps in a row that did not halve it
        self._bracketed = False

    def add(self, u: float, kl: float) -> None:
        """Record a pass at log η = u with KL ``kl`` (inf for a failed pass)."""
        with np.errstate(divide="ignore"):
            g = float(np.log(kl)) - self.log_eps if np.isfinite(kl) else np.inf
        if np.isnan(g):              # ε = 0 and KL = 0, or ε = inf (never searched)
            g = np.inf
        self.u.append(float(u))
        self.g.append(g)
        best = min(self._best, abs(g))
        if self._bracketed:
            self._slow = self._slow + 1 if best > 0.5 * self._best else 0
        self._best = best

    def bracket(self):
        """(lo, g_lo, hi, g_hi): the tightest bracket known, None for a side not yet seen."""
        lo = g_lo = hi = g_hi = None
        for u, g in zip(self.u, self.g):
            if g > 0 and (lo is None or u > lo):
                lo, g_lo = u, g
            elif g < 0 and (hi is None or u < hi):
                hi, g_hi = u, g
        return lo, g_lo, hi, g_hi

    def next(self) -> Optional[float]:
        lo, g_lo, hi, g_hi = self.bracket()
        self._bracketed = lo is not None and hi is not None
        if self._bracketed and hi - lo < 1e-6:
            return None
        fin = sorted((abs(g), u, g) for u, g in zip(self.u, self.g) if np.isfinite(g))
        cand = None
        if len(fin) == 1:
            _, u0, g0 = fin[0]
            cand = u0 - g0 / (_SLOPE_UP if g0 > 0 else _SLOPE_DOWN)
        elif len(fin) >= 2:
            (_, u0, g0), (_, u1, g1) = fin[:2]
            slope = float(np.clip((g1 - g0) / (u1 - u0), *_SLOPE_RANGE))
            cand = u0 - g0 / slope
            if self._bracketed and np.isfinite(g_lo) and np.isfinite(g_hi):
                third = [(u, g) for _, u, g in fin if u != lo and u != hi][:1]
                if third:
                    root = _parabola_root([(lo, g_lo), (hi, g_hi)] + third, lo, hi)
                    if root is not None:
                        cand = root
        if self._bracketed:
            if cand is None or not lo < cand < hi or self._slow >= 2:
                cand = 0.5 * (lo + hi)
                self._slow = 0
        elif lo is not None:                           # η too small so far: raise it
            if cand is None or not np.isfinite(g_lo):  # the largest η tried failed
                cand = lo + _FAIL_STEP
            else:
                cand = lo + float(np.clip(cand - lo, _MIN_STEP, _MAX_UP))
        else:                                          # η too large so far: lower it
            if cand is None or not np.isfinite(g_hi):  # KL = 0 at the smallest η tried
                cand = hi - _MAX_DOWN
            else:
                cand = hi - float(np.clip(hi - cand, _MIN_STEP, _MAX_DOWN))
        cand = float(np.clip(cand, self.log_min, self.log_max))
        if any(abs(cand - u) < 1e-12 for u in self.u):
            return None
        return cand


def _parabola_root(points, lo, hi):
    """The root in (lo, hi) of the parabola through three (u, g) points at which it falls, if
    there is exactly one such root; else None."""
    (u0, g0), (u1, g1), (u2, g2) = points
    # Newton form: g = g0 + d01 (u − u0) + c (u − u0)(u − u1)
    d01 = (g1 - g0) / (u1 - u0)
    c = ((g2 - g0) / (u2 - u0) - d01) / (u2 - u1)
    # as a + b (u − u0) + c (u − u0)²
    a, b = g0, d01 - c * (u1 - u0)
    if abs(c) * (hi - lo) ** 2 < 1e-12 * (abs(b) * (hi - lo) + abs(a)):
        roots = [-a / b] if b != 0 else []
    else:
        disc = b * b - 4 * c * a
        if disc < 0:
            return None
        sq = np.sqrt(disc)
        q = -0.5 * (b + np.copysign(sq, b))           # stable quadratic formula
        roots = [q / c] + ([a / q] if q != 0 else [])
    inside = [u0 + r for r in roots
              if lo < u0 + r < hi and b + 2 * c * r < 0]
    return inside[0] if len(inside) == 1 else None


def _solve(cond: _Condition, eps: float, eta0: float, tolerance: float, max_iterations: int,
           log_min: float, log_max: float):
    """The dual search for one condition: (the pass to keep or None, converged, passes)."""
    search = _DualSearch(np.log(eps) if eps > 0 else -np.inf, log_min, log_max)
    best, best_score, converged = None, None, False
    eta = eta0
    it = 0
    for it in range(1, max_iterations + 1):
        u = np.log(eta)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            p = cond.evaluate(eta)
        if p is None:
            search.add(u, np.inf)
            if u >= log_max - 1e-9:
                break
        else:
            # keep the feasible result closest to ε, else the smallest-KL one
            score = (0, abs(p.kl - eps)) if p.kl <= eps * (1 + tolerance) else (1, p.kl)
            if best is None or score < best_score:
                best, best_score = p, score
                cond.keep(p)
            if np.isinf(eps) or abs(p.kl - eps) <= tolerance * eps or (p.kl < eps and
                                                                         u <= log_min + 1e-9):
                best, converged = p, True
                break
            search.add(u, p.kl)
            if p.kl > eps and u >= log_max - 1e-9:
                break
        nxt = search.next()
        if nxt is None:
            break
        eta = float(np.exp(nxt))
    return best, converged, it


def kl_constrained_lqr(dynamics: Sequence, costs: Sequence[QuadraticCost],
                       prev: Sequence[LinearGaussianController], epsilon: Sequence[float],
                       eta0: Optional[Sequence[float]] = None, *, tolerance: float = 0.1,
                       max_iterations: int = 40, min_eta: float = 1e-8,
                       max_eta: float = 1e16) -> List[LQRResult]:
    """New controllers p_m with KL(p_m ‖ prev_m) ≈ epsilon_m (total over t), for M conditions.

    ``dynamics[m]`` has Fm, fv, dyn_covar, x0mu, x0sigma; ``epsilon`` may be ``inf`` for an
    unconstrained LQR step (η = min_eta).  The dual search over η (:class:`_DualSearch`) starts at
    ``eta0`` (default 1) and stops for a condition when ``|KL − ε|`` ≤ tolerance·ε, or when
    η = min_eta and KL < ε (inactive constraint): converged.  It also stops, unconverged, at
    η = max_eta with KL > ε or no positive-definite pass, when the bracket on η has collapsed, or
    after ``max_iterations`` passes; it then returns the pass with KL ≤ (1 + tolerance)·ε closest
    to ε, else the one with the smallest KL — or, with no positive-definite pass at all, the
    previous controller (η = max_eta, KL 0).
    """
    M = len(dynamics)
    eps = np.asarray(epsilon, dtype=float)
    eta = np.clip(np.ones(M) if eta0 is None else np.asarray(eta0, float), min_eta, max_eta)
    eta = np.where(np.isinf(eps), min_eta, eta)
    log_min, log_max = np.log(min_eta), np.log(max_eta)
    results = []
    for m in range(M):
        best, converged, iters = _solve(_Condition(dynamics[m], costs[m], prev[m]), float(eps[m]),
                                        float(eta[m]), tolerance, max_iterations, log_min, log_max)
        if best is None:
            log.warning("LQR: condition %d: no positive-definite solution up to eta=%.3g; "
                        "keeping the previous controller", m, max_eta)
            ctrl, d = prev[m].copy(), dynamics[m]
            mu, sigma = forward_pass(d.Fm[None], d.fv[None], d.dyn_covar[None], d.x0mu[None],
                                     d.x0sigma[None], ctrl.K[None], ctrl.k[None],
                                     ctrl.pol_covar[None])
            results.append(LQRResult(ctrl, float(max_eta), 0.0, float(eps[m]), False, iters,
                                     mu[0], sigma[0]))
            continue
        if not converged:
            log.warning("LQR: condition %d: dual search stopped at KL %.4g for epsilon %.4g "
                        "(eta %.3g) after %d iterations", m, best.kl, eps[m], best.eta, iters)
        ctrl = LinearGaussianController(best.K, best.k, best.pol_covar, best.chol,
                                        best.inv_pol_covar)
        # the marginals of the pass that produced the controller are its forward pass
        mu, sigma = _state_action(best.mu_x, best.sig_x, ctrl.K, ctrl.k, ctrl.pol_covar)
        results.append(LQRResult(ctrl, float(best.eta), best.kl, float(eps[m]), converged, iters,
                                 mu, sigma))
    return results
