"""Time-varying linear-Gaussian dynamics and their (prior-regularised) fit from trials.

Model, per time step t = 0 .. T-2::

    x_{t+1} ~ N(Fm_t [x_t; u_t] + fv_t, dyn_covar_t)

The fit follows Levine & Abbeel (2014), "Learning Neural Network Policies with Guided Policy
Search under Unknown Dynamics", section 3: for each t a joint Gaussian over the tuple
``(x_t, u_t, x_{t+1})`` is estimated from the N trials -- optionally as the normal-inverse-Wishart
(NIW) posterior under a prior ``(mu0, Phi, m, n0)`` -- and then conditioned on ``(x_t, u_t)``.

Everything is batched over t: the only Python loop over time is the fallback used for a prior
object that offers ``eval`` but not ``eval_batch``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Tuple

import numpy as np
import scipy.linalg as sla

__all__ = [
    "LinearGaussianDynamics",
    "fit_linear_gaussian",
    "joint_transition_points",
    "condition_joint_gaussian",
]

# Relative jitter (times the mean diagonal of each xu-block) always added before the Cholesky
# factorisation, on top of the absolute `regularization`.  It is far below any physical effect
# (1e-12 relative) but keeps huge-scale or rank-deficient blocks numerically positive definite.
_REL_JITTER = 1e-12


@dataclass
class LinearGaussianDynamics:
    """Per-time-step linear-Gaussian dynamics  x_{t+1} ~ N(Fm_t [x_t; u_t] + fv_t, dyn_covar_t).

    Attributes:
        Fm: (T, dX, dX+dU) linear term; ``Fm[T-1]`` is zeros (no transition after the last step).
        fv: (T, dX) bias; ``fv[T-1]`` is zeros.
        dyn_covar: (T, dX, dX) symmetric PSD noise covariance; ``dyn_covar[T-1]`` is zeros.
        x0mu: (dX,) initial-state mean.
        x0sigma: (dX, dX) initial-state covariance (symmetric positive definite).
    """

    Fm: np.ndarray
    fv: np.ndarray
    dyn_covar: np.ndarray
    x0mu: np.ndarray
    x0sigma: np.ndarray

    _KEYS = ("Fm", "fv", "dyn_covar", "x0mu", "x0sigma")

    def __post_init__(self) -> None:
        for k in self._KEYS:
            setattr(self, k, np.asarray(getattr(self, k), dtype=np.float64))
        if self.Fm.ndim != 3:
            raise ValueError(f"Fm must be (T, dX, dX+dU); got {self.Fm.shape}")
        T, dX, dXU = self.Fm.shape
        if dXU < dX:
            raise ValueError(f"Fm {self.Fm.shape}: last axis must be dX+dU >= dX")
        expected = {"fv": (T, dX), "dyn_covar": (T, dX, dX), "x0mu": (dX,), "x0sigma": (dX, dX)}
        for k, shape in expected.items():
            if getattr(self, k).shape != shape:
                raise ValueError(f"{k} has shape {getattr(self, k).shape}, expected {shape}")

    @property
    def T(self) -> int:
        return self.Fm.shape[0]

    @property
    def dX(self) -> int:
        return self.Fm.shape[1]

    @property
    def dU(self) -> int:
        return self.Fm.shape[2] - self.Fm.shape[1]

    def to_arrays(self) -> dict:
        """Return ``{"Fm", "fv", "dyn_covar", "x0mu", "x0sigma"}`` -> copies of the arrays
        (e.g. for ``np.savez``)."""
        return {k: np.array(getattr(self, k), copy=True) for k in self._KEYS}

    @classmethod
    def from_arrays(cls, d: Mapping[str, np.ndarray]) -> "LinearGaussianDynamics":
        """Inverse of :meth:`to_arrays`; ``d`` may be a dict or an ``np.load`` NpzFile."""
        missing = [k for k in cls._KEYS if k not in d]
        if missing:
            raise KeyError(f"missing arrays {missing} for LinearGaussianDynamics")
        return cls(**{k: np.array(d[k], dtype=np.float64, copy=True) for k in cls._KEYS})

    def copy(self) -> "LinearGaussianDynamics":
        return LinearGaussianDynamics.from_arrays(self.to_arrays())


def joint_transition_points(X: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Stack the transition tuples ``[x_t, u_t, x_{t+1}]`` per time step.

    Args:
        X: (N, T, dX) states.  U: (N, T, dU) actions.
    Returns:
        (T-1, N, 2*dX+dU) array; entry [t, i] is ``[X[i, t], U[i, t], X[i, t+1]]``.
    """
    N, T, dX = X.shape
    dU = U.shape[2]
    P = np.empty((max(T - 1, 0), N, 2 * dX + dU), dtype=np.result_type(X, U))
    P[:, :, :dX] = np.swapaxes(X[:, :-1], 0, 1)
    P[:, :, dX:dX + dU] = np.swapaxes(U[:, :-1], 0, 1)
    P[:, :, dX + dU:] = np.swapaxes(X[:, 1:], 0, 1)
    return P


def _check_XU(X, U) -> Tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    U = np.asarray(U, dtype=np.float64)
    if X.ndim != 3 or U.ndim != 3:
        raise ValueError(f"X and U must be (N, T, d); got {X.shape} and {U.shape}")
    if X.shape[:2] != U.shape[:2]:
        raise ValueError(f"X {X.shape} and U {U.shape} disagree on (N, T)")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"need at least one trial and one time step; got X {X.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(U))):
        raise ValueError("X and U must be finite (filter bad trials before fitting)")
    return X, U


def _batched_cho_solve(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve A_b W_b = B_b for symmetric positive (semi)definite A_b by Cholesky.

    Args:
        A: (nb, n, n) symmetric matrices, expected positive definite.
        B: (nb, n, k) right-hand sides.
    Returns:
        (nb, n, k) solutions.  Slices whose Cholesky factorisation fails get an increasing
        diagonal jitter (relative to their scale); a final fallback is a least-squares solve,
        so the result is always finite for finite input.
    """
    try:
        c = sla.cho_factor(A, lower=True, check_finite=False)
        W = sla.cho_solve(c, B, check_finite=False)
        if np.all(np.isfinite(W)):
            return W
    except (np.linalg.LinAlgError, ValueError):
        pass  # some slice is not numerically PD, or scipy without batch support: per slice
    W = np.empty(B.shape, dtype=np.float64)
    n = A.shape[-1]
    eye = np.eye(n)
    for b in range(A.shape[0]):
        Ab = 0.5 * (A[b] + A[b].T)
        scale = max(float(np.mean(np.abs(np.diag(Ab)))), 1e-300)
        jitter = 0.0
        for attempt in range(16):
            try:
                c = sla.cho_factor(Ab + jitter * eye, lower=True, check_finite=False)
                Wb = sla.cho_solve(c, B[b], check_finite=False)
                if np.all(np.isfinite(Wb)):
                    W[b] = Wb
                    break
            except np.linalg.LinAlgError:
                pass
            jitter = scale * 1e-12 * 10.0 ** attempt if jitter else scale * 1e-12
        else:
            W[b] = np.linalg.lstsq(Ab, B[b], rcond=None)[0]
    return W


def _is_numerically_pd(S: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(S)
        return True
    except np.linalg.LinAlgError:
        return False


def _project_psd(S: np.ndarray) -> np.ndarray:
    """Symmetrise (nb, n, n) matrices and clip the negative eigenvalues of the slices that have
    any (round-off of a Schur complement) to zero.  Returns a new (nb, n, n) array.

    One batched Cholesky factorisation first: the slices it accepts are positive definite up to
    its backward error (eigenvalues >= -O(n eps) |S|, the accuracy a clipped reconstruction
    ``V max(w, 0) V^T`` has anyway) and are returned as they are.  Only if some slice is rejected
    are the rejected ones found (per-slice Cholesky) and eigendecomposed, once."""
    S = 0.5 * (S + np.swapaxes(S, -1, -2))
    if S.shape[0] == 0 or _is_numerically_pd(S):
        return S
    cand = np.array([b for b in range(S.shape[0]) if not _is_numerically_pd(S[b])], dtype=np.intp)
    w, V = np.linalg.eigh(S[cand])
    neg = w[:, 0] < 0.0
    if np.any(neg):
        Vb = V[neg]
        Sb = (Vb * np.maximum(w[neg], 0.0)[:, None, :]) @ np.swapaxes(Vb, -1, -2)
        S[cand[neg]] = 0.5 * (Sb + np.swapaxes(Sb, -1, -2))
    return S


def condition_joint_gaussian(mu: np.ndarray, sigma: np.ndarray, dXU: int,
                             regularization: float = 1e-6):
    """Condition joint Gaussians over ``(xu, y)`` on ``xu``:  y | xu ~ N(F xu + f, S).

    Args:
        mu: (nb, D) joint means, D = dXU + dY.
        sigma: (nb, D, D) joint covariances (symmetric).
        dXU: size of the conditioning block (the first dXU entries).

        regularization: added to the diagonal of the xu-block before solving (plus a 1e-12
            relative jitter).
    Returns:
        F (nb, dY, dXU), f (nb, dY), S (nb, dY, dY) with S symmetric PSD.  S is the Schur complement
        ``Syy - Sxy^T (Sxx + reg I)^{-1} Sxy`` (= ``Syy - F (Sxx + reg I) F^T``).
    """
    A = sigma[:, :dXU, :dXU].copy()
    idx = np.arange(dXU)
    diag_mean = (np.maximum(np.mean(A[:, idx, idx], axis=1), 0.0) if dXU
                 else np.zeros(A.shape[0]))          # nothing to condition on: no jitter
    A[:, idx, idx] += (regularization + _REL_JITTER * diag_mean)[:, None]
    Bm = sigma[:, :dXU, dXU:]
    W = _batched_cho_solve(A, Bm)  # (nb, dXU, dY) = A^{-1} Sxy
    F = np.swapaxes(W, -1, -2)
    f = mu[:, dXU:] - np.einsum("byx,bx->by", F, mu[:, :dXU])
    S = sigma[:, dXU:, dXU:] - np.swapaxes(Bm, -1, -2) @ W
    return F, f, _project_psd(S)


def eval_prior(prior, dX: int, dU: int, P: np.ndarray):
    """Evaluate the NIW prior for every time step.

    Args:
        prior: object with ``eval(dX, dU, pts)`` -> (mu0 (D,), Phi (D, D), m, n0); if it also has
            ``eval_batch(dX, dU, P)`` taking (nb, N, D) that is used instead (vectorised over t).

        P: (nb, N, D) transition tuples per time step.
    Returns:
        mu0 (nb, D), Phi (nb, D, D), m (nb,), n0 (nb,) as float64 arrays.
    """
    nb, _, D = P.shape
    if hasattr(prior, "eval_batch"):
        mu0, Phi, m, n0 = prior.eval_batch(dX, dU, P)
    else:
        outs = [prior.eval(dX, dU, P[t]) for t in range(nb)]
        mu0 = np.stack([o[0] for o in outs])
        Phi = np.stack([o[1] for o in outs])
        m = np.array([float(o[2]) for o in outs])
        n0 = np.array([float(o[3]) for o in outs])
    mu0 = np.broadcast_to(np.asarray(mu0, dtype=np.float64), (nb, D))
    Phi = np.broadcast_to(np.asarray(Phi, dtype=np.float64), (nb, D, D))
    m = np.broadcast_to(np.asarray(m, dtype=np.float64), (nb,))
    n0 = np.broadcast_to(np.asarray(n0, dtype=np.float64), (nb,))
    if not (np.all(np.isfinite(mu0)) and np.all(np.isfinite(Phi))
            and np.all(np.isfinite(m)) and np.all(np.isfinite(n0))):
        raise ValueError("prior returned non-finite parameters")
    if np.any(m < 0):
        raise ValueError("prior strength m must be >= 0")
    return mu0, Phi, m, n0


def _regression_gram(Z: np.ndarray, Y: np.ndarray, regp: np.ndarray, F: np.ndarray,
                     S: np.ndarray) -> None:
    """Ridge regression of centred Y (nb, N, dY) on centred Z (nb, N, dZ), ridge ``regp`` (nb,) > 0.

    Writes F (nb, dY, dZ) = W^T with W = (Z^T Z / N + regp I)^{-1} Z^T Y / N, and the Schur
    complement S (nb, dY, dY) = Y^T Y / N - (Y^T Z / N) W  of the empirical joint covariance,
    computed as a sum of Gram matrices (positive semidefinite by construction, no cancellation):

        S = R^T R / N + regp W^T W,   R = Y - Z W                    (the residuals)
          = (lam / N) H^T H,          H = L^{-1} Y,  L L^T = Z Z^T + lam I,  lam = N regp

    The second (dual) form needs only an N x N Cholesky factor and is used when N <= dZ (few
    trials: the usual case); as Z^T Z is never formed it stays accurate to round-off where that is
    ill conditioned (a small ridge, large data scales), unlike the Schur form.  The first one
    (dZ x dZ) is used otherwise.

    Rounding: S is exactly symmetric, its eigenvalues are >= -O(N eps) |S| (a Gram matrix
    evaluated in floating point), the same bound the eigenvalue clipping of the general path
    (``V max(w, 0) V^T``, itself rounded) gives; nothing further is done about it.

    F and S may be views into larger arrays: they are written in place, to keep the temporaries
    few (touching fresh memory is a sizeable part of a fit that takes a few ms).  Raises
    ``np.linalg.LinAlgError`` when a slice's Cholesky factorisation fails.
    """
    N, dZ = Z.shape[1], Z.shape[2]
    ZT = np.swapaxes(Z, -1, -2)
    if N <= dZ:
        lam = N * regp
        K = Z @ ZT  # (nb, N, N)
        i = np.arange(N)
        K[:, i, i] += lam[:, None]
        Linv = np.linalg.inv(np.linalg.cholesky(K))  # N x N: cheaper than solving with L
        H = Linv @ Y                                            # L^{-1} Y
        M = np.swapaxes(Linv, -1, -2) @ H                       # (Z Z^T + lam I)^{-1} Y
        np.matmul(np.swapaxes(M, -1, -2), Z, out=F)             # W = Z^T M (push-through)
        H *= np.sqrt(lam / N)[:, None, None]
        np.matmul(np.swapaxes(H, -1, -2), H, out=S)
    else:
        A = ZT @ Z / N
        i = np.arange(dZ)
        A[:, i, i] += regp[:, None]
        np.linalg.cholesky(A)  # positive definiteness check, as for the Schur-complement path
        W = np.linalg.solve(A, ZT @ Y / N)
        F[...] = np.swapaxes(W, -1, -2)
        R = Y - Z @ W
        np.matmul(np.swapaxes(R, -1, -2), R, out=S)
        S /= N
        S += regp[:, None, None] * (np.swapaxes(W, -1, -2) @ W)
    # numpy evaluates G^T G with BLAS syrk, exactly symmetric; symmetrise should it not
    if not np.array_equal(S, np.swapaxes(S, -1, -2)):
        S[...] = 0.5 * (S + np.swapaxes(S, -1, -2))


def _fit_conditional_without_prior(P: np.ndarray, d_in: int, regularization: float, out=None,
                                   overwrite_P: bool = False):
    """:func:`fit_conditional_gaussians` without a prior: the same F, f, S as conditioning the
    empirical covariance (:func:`condition_joint_gaussian`), via :func:`_regression_gram` -- no
    D x D covariance, no eigendecomposition.  Batches whose ridge is not positive (regularization
    <= 0 on data without spread) or whose factorisation fails take the general path.

    ``out``: optional (F, f, S) arrays of the result shapes to write into; ``overwrite_P``: P may
    be centred in place."""
    B, N, D = P.shape
    dY = D - d_in
    if out is None:
        out = (np.empty((B, dY, d_in)), np.empty((B, dY)), np.empty((B, dY, dY)))
    F, f, S = out
    emp_mu = P.mean(axis=1)
    if overwrite_P:
        C = P
        C -= emp_mu[:, None, :]
    else:
        C = P - emp_mu[:, None, :]
    Z, Y = C[:, :, :d_in], C[:, :, d_in:]
    # the regularisation of condition_joint_gaussian: reg + 1e-12 * mean diagonal of the Z-block
    regp = regularization + _REL_JITTER * (np.einsum("bnd,bnd->b", Z, Z) / (N * d_in))
    fast = np.isfinite(regp) & (regp > 0.0)
    try:
        if np.all(fast):
            _regression_gram(Z, Y, regp, F, S)
        elif np.any(fast):
            idx = np.flatnonzero(fast)
            Fi, Si = np.empty((idx.size, dY, d_in)), np.empty((idx.size, dY, dY))
            _regression_gram(Z[idx], Y[idx], regp[idx], Fi, Si)
            F[idx], S[idx] = Fi, Si
    except np.linalg.LinAlgError:  # find the failing slices
        for b in np.flatnonzero(fast):
            try:
                _regression_gram(Z[b:b + 1], Y[b:b + 1], regp[b:b + 1], F[b:b + 1], S[b:b + 1])
            except np.linalg.LinAlgError:
                fast[b] = False
    fast &= np.isfinite(F).all(axis=(1, 2)) & np.isfinite(S).all(axis=(1, 2))
    if not np.all(fast):
        slow = np.flatnonzero(~fast)
        Cs = C[slow]
        sig = np.swapaxes(Cs, -1, -2) @ Cs / N
        F[slow], _, S[slow] = condition_joint_gaussian(
            emp_mu[slow], 0.5 * (sig + np.swapaxes(sig, -1, -2)), d_in, regularization)
    np.subtract(emp_mu[:, d_in:], np.einsum("byx,bx->by", F, emp_mu[:, :d_in]), out=f)
    return F, f, S


def fit_conditional_gaussians(P: np.ndarray, d_in: int, prior_params=None,
                              regularization: float = 1e-6):
    """Per-batch linear-Gaussian regression y | z ~ N(F z + f, S) from points P = [z, y].

    The shared core of the dynamics fit (z = [x_t, u_t], y = x_{t+1}) and of the policy
    linearisation (z = x_t, y = u_t).  For each of the B batches (time steps) the empirical mean and
    (1/N) covariance of its N points are combined with the normal-inverse-Wishart prior
    ``prior_params = (mu0 (B, D), Phi (B, D, D), m (B,), n0 (B,))`` if given::

        sigma = (Phi + N S_e + (N m)/(N + m) (mu_e - mu0)(mu_e - mu0)^T) / (N + n0),  mu = mu_e

    and the joint Gaussian is conditioned on its first ``d_in`` dimensions.  Without a prior the
    same result is computed from the centred points directly (a ridge regression whose residual
    covariance is a sum of Gram matrices, see :func:`_regression_gram`): no D x D covariance and no
    eigenvalue clipping, and more accurate, as the Schur complement's cancellation is avoided.

    Args:
        P: (B, N, D) points.
        d_in: number of conditioning dimensions (the first ones).
        prior_params: None, or the NIW parameters per batch.
        regularization: added to the conditioning block's diagonal.
    Returns:
        F (B, D-d_in, d_in), f (B, D-d_in), S (B, D-d_in, D-d_in).
    """
    if prior_params is None and 0 < d_in < P.shape[2]:
        return _fit_conditional_without_prior(P, d_in, regularization)
    N = P.shape[1]
    emp_mu = P.mean(axis=1)  # (B, D)
    diff = P - emp_mu[:, None, :]
    emp_sig = np.swapaxes(diff, -1, -2) @ diff / N  # (B, D, D)
    if prior_params is None:
        sigma = emp_sig
    else:
        mu0, Phi, m, n0 = prior_params
        denom = N + n0
        if np.any(denom <= 0):
            raise ValueError("prior n0 must satisfy N + n0 > 0")
        dm = emp_mu - mu0
        shrink = (N * m) / (N + m)
        sigma = (Phi + N * emp_sig
                 + shrink[:, None, None] * (dm[:, :, None] * dm[:, None, :])) / denom[:, None, None]
    sigma = 0.5 * (sigma + np.swapaxes(sigma, -1, -2))
    return condition_joint_gaussian(emp_mu, sigma, d_in, regularization)


def fit_linear_gaussian(X, U, prior=None, regularization: float = 1e-6,
                        x0_regularization: float = 1e-6) -> LinearGaussianDynamics:
    """Fit time-varying linear-Gaussian dynamics to N trials of one condition.

    For each t = 0 .. T-2, with the tuples  p_i = [x_t^i, u_t^i, x_{t+1}^i]  (D = 2dX+dU):

    * empirical mean  mu_e = mean_i p_i  and (maximum-likelihood, 1/N) covariance  S_e;
    * with a ``prior`` giving the NIW parameters (mu0, Phi, m, n0) for that step's points,
      the posterior::

          sigma = (Phi + N S_e + (N m)/(N + m) (mu_e - mu0)(mu_e - mu0)^T) / (N + n0)
          mu    = mu_e

      The prior shapes the covariance (the slopes F_t and the noise) but not the mean: the GMM
      mixes all conditions, and blending its mean into mu would bias the offset f_t of this
      condition toward the others (as in the GPS reference implementation, the mean is the
      empirical one);

      (without a prior: sigma = S_e, mu = mu_e);
    * conditioning on the (x_t, u_t) block, with ``regularization`` (+1e-12 relative jitter) on
      its diagonal, solved by Cholesky:  Fm_t, fv_t, dyn_covar_t (Schur complement, symmetric,
      clipped to PSD).  Without a prior the Schur complement is evaluated in its equivalent Gram
      form  R^T R / N + reg' F F^T  (R: residuals of the centred regression, reg' the regularization
      plus jitter), PSD by construction and with no eigendecomposition.

    The initial state: ``x0mu`` = mean of X[:, 0]; ``x0sigma`` = sample covariance (1/(N-1),
    zero for N=1) + ``x0_regularization`` I + 1e-12 * (its mean diagonal) I.

    Args:
        X: (N, T, dX) states, U: (N, T, dU) actions, N >= 1 (finite values).

        prior: ``None`` or an object with ``eval(dX, dU, pts)`` -> (mu0 (D,), Phi (D, D), m, n0),
            ``pts`` (N, D); an optional ``eval_batch(dX, dU, P)``, P (T-1, N, D), returning
            (mu0 (T-1, D), Phi (T-1, D, D), m (T-1,), n0 (T-1,)) is preferred when present.

        regularization: added to the xu-block diagonal of the joint covariance before solving.
        x0_regularization: added to the diagonal of ``x0sigma``.
    Returns:
        :class:`LinearGaussianDynamics` with all arrays finite.
    """
    X, U = _check_XU(X, U)
    N, T, dX = X.shape
    dU = U.shape[2]
    dXU = dX + dU
    Fm = np.zeros((T, dX, dXU))
    fv = np.zeros((T, dX))
    dyn_covar = np.zeros((T, dX, dX))

    if T >= 2:
        P = joint_transition_points(X, U)  # (T-1, N, D)
        if prior is None and dX > 0:  # written straight into the result arrays
            _fit_conditional_without_prior(P, dXU, regularization,
                                           out=(Fm[:-1], fv[:-1], dyn_covar[:-1]), overwrite_P=True)
        else:
            prior_params = None if prior is None else eval_prior(prior, dX, dU, P)
            Fm[:-1], fv[:-1], dyn_covar[:-1] = fit_conditional_gaussians(P, dXU, prior_params,
                                                                         regularization)

    x0 = X[:, 0]
    x0mu = x0.mean(axis=0)
    if N > 1:
        d0 = x0 - x0mu
        x0sigma = d0.T @ d0 / (N - 1)
    else:
        x0sigma = np.zeros((dX, dX))
    x0sigma = 0.5 * (x0sigma + x0sigma.T)
    jitter = x0_regularization + _REL_JITTER * max(float(np.mean(np.diag(x0sigma))), 0.0)
    if jitter <= 0.0:
        jitter = 1e-12
    x0sigma[np.diag_indices(dX)] += jitter
    return LinearGaussianDynamics(Fm=Fm, fv=fv, dyn_covar=dyn_covar, x0mu=x0mu, x0sigma=x0sigma)
