"""Trajectory costs with analytic first and second derivatives.

Every cost is evaluated on a batch of ``N`` trajectories of length ``T`` at
once and returns a :class:`CostDerivatives` holding the per-step cost and its
derivatives with respect to the state ``x_t`` (``dX`` dims) and the action
``u_t`` (``dU`` dims). All costs here are *separable in time*: the cost at step
``t`` depends only on ``(x_t, u_t)``, so the derivative arrays are per step.

Shapes (for a batch):

* ``l``   -- ``(N, T)``
* ``lx``  -- ``(N, T, dX)``
* ``lu``  -- ``(N, T, dU)``
* ``lxx`` -- ``(N, T, dX, dX)``
* ``luu`` -- ``(N, T, dU, dU)``
* ``lux`` -- ``(N, T, dU, dX)``  (``lux[..., a, i] = d^2 l / du_a dx_i``)

The state distance penalty follows the GPS paper (Levine & Finn) form::

    d = x[indices] - target
    s = sum_j (wp_j d_j)^2
    l = ramp_t * (0.5 * l2 * s + l1 * sqrt(alpha + s))

All arithmetic is float64 and written so that results stay finite whenever the
mathematical value is finite (e.g. the l1 gradient for ``|d| = 1e200``).
"""
from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = [
    "CostDerivatives",
    "add_derivatives",
    "Cost",
    "RAMP_KINDS",
    "ramp_weights",
    "ActionCost",
    "StateCost",
    "EEPointsCost",
    "WeightedSumCost",
]

RAMP_KINDS = ("constant", "linear", "quadratic", "final_only")

_FIELDS = ("l", "lx", "lu", "lxx", "luu", "lux")


# --------------------------------------------------------------------------- #
# Derivative container
# --------------------------------------------------------------------------- #
class CostDerivatives(NamedTuple):
    """Cost value and derivatives, batched over trials (or averaged over them).

    Batched shapes (leading ``N``); after :meth:`mean` the leading ``N`` is gone.

    Attributes:
        l:   ``(N, T)`` per-step cost.
        lx:  ``(N, T, dX)`` gradient w.r.t. state.
        lu:  ``(N, T, dU)`` gradient w.r.t. action.
        lxx: ``(N, T, dX, dX)`` state Hessian.
        luu: ``(N, T, dU, dU)`` action Hessian.
        lux: ``(N, T, dU, dX)`` mixed second derivative ``d^2 l / du dx``.
    """

    l: np.ndarray
    lx: np.ndarray
    lu: np.ndarray
    lxx: np.ndarray
    luu: np.ndarray
    lux: np.ndarray

    @classmethod
    def zeros(cls, N: int, T: int, dX: int, dU: int) -> "CostDerivatives":
        """All-zero derivatives with batched shapes ``(N, T, ...)``."""
        return cls(
            l=np.zeros((N, T)),
            lx=np.zeros((N, T, dX)),
            lu=np.zeros((N, T, dU)),
            lxx=np.zeros((N, T, dX, dX)),
            luu=np.zeros((N, T, dU, dU)),
            lux=np.zeros((N, T, dU, dX)),
        )

    def scaled(self, w: float) -> "CostDerivatives":
        """Return every field multiplied by the scalar ``w`` (same shapes)."""
        w = float(w)
        if not np.isfinite(w):
            raise ValueError(f"scale factor must be finite, got {w!r}")
        return CostDerivatives(*(w * np.asarray(f, dtype=np.float64) for f in self))

    def mean(self) -> "CostDerivatives":
        """Average over the leading trial axis.

        Returns:
            CostDerivatives with shapes ``l (T,)``, ``lx (T, dX)``, ``lu (T, dU)``,
            ``lxx (T, dX, dX)``, ``luu (T, dU, dU)``, ``lux (T, dU, dX)``.
        """
        if np.ndim(self.l) != 2:
            raise ValueError(
                f"mean() needs batched derivatives with l of shape (N, T), got shape {np.shape(self.l)}"
            )
        if np.shape(self.l)[0] == 0:
            raise ValueError("mean() over zero trials is undefined")
        return CostDerivatives(*(np.mean(f, axis=0) for f in self))


def add_derivatives(a: CostDerivatives, b: CostDerivatives) -> CostDerivatives:
    """Field-wise sum of two :class:`CostDerivatives` with identical shapes."""
    for name, fa, fb in zip(_FIELDS, a, b):
        if np.shape(fa) != np.shape(fb):
            raise ValueError(
                f"cannot add derivatives: field {name} has shapes {np.shape(fa)} and {np.shape(fb)}"
            )
    return CostDerivatives(*(np.asarray(fa, dtype=np.float64) + fb for fa, fb in zip(a, b)))


@runtime_checkable
class Cost(Protocol):
    """Anything that maps a batch of trajectories to cost derivatives."""

    def eval(self, X: np.ndarray, U: np.ndarray) -> CostDerivatives:
        """Evaluate on states ``X (N, T, dX)`` and actions ``U (N, T, dU)``."""
        ...


# --------------------------------------------------------------------------- #
# Validation helpers
# --------------------------------------------------------------------------- #
def _check_XU(X: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cast to float64 and check ``X (N, T, dX)``, ``U (N, T, dU)`` are consistent."""
    X = np.asarray(X, dtype=np.float64)
    U = np.asarray(U, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"X must have shape (N, T, dX), got shape {X.shape}")
    if U.ndim != 3:
        raise ValueError(f"U must have shape (N, T, dU), got shape {U.shape}")
    if X.shape[:2] != U.shape[:2]:
        raise ValueError(f"X and U disagree on (N, T): {X.shape[:2]} vs {U.shape[:2]}")
    return X, U


def _nonneg_vector(values, name: str, length: int | None = None) -> np.ndarray:
    """1-D finite non-negative float64 vector, optionally of a given length."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name} has length {arr.shape[0]}, expected {length}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative, got {arr.tolist()}")
    return arr


def _nonneg_scalar(value, name: str) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    return v


# --------------------------------------------------------------------------- #
# Ramps
# --------------------------------------------------------------------------- #
def ramp_weights(kind: str, T: int, final_multiplier: float = 1.0) -> np.ndarray:
    """Per-time-step cost multipliers.

    Args:
        kind: one of ``"constant"`` (ones), ``"linear"`` (``(t+1)/T``),
            ``"quadratic"`` (``((t+1)/T)**2``), ``"final_only"`` (zeros, last = 1).

        T: horizon, ``T >= 1``.
        final_multiplier: the last entry is multiplied by this (finite, >= 0).

    Returns:
        ``(T,)`` float64 array.
    """
    if isinstance(T, bool) or int(T) != T or int(T) < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    T = int(T)
    fm = _nonneg_scalar(final_multiplier, "final_multiplier")
    frac = np.arange(1, T + 1, dtype=np.float64) / T
    if kind == "constant":
        w = np.ones(T)
    elif kind == "linear":
        w = frac
    elif kind == "quadratic":
        w = frac**2
    elif kind == "final_only":
        w = np.zeros(T)
        w[-1] = 1.0
    else:
        raise ValueError(f"unknown ramp kind {kind!r}; allowed kinds: {', '.join(RAMP_KINDS)}")
    w[-1] *= fm
    return w


# --------------------------------------------------------------------------- #
# Costs
# --------------------------------------------------------------------------- #
class ActionCost:
    """Quadratic action penalty ``l_t = 0.5 * sum_i w_i r_{t,i}^2`` on ``r_t = u_t - C x_t``.

    Without ``reference`` (``C = 0``) it penalises the action itself.  With it, the action
    relative to a state-dependent reference, e.g. a joint position command minus the current
    joint position (:mod:`gps_ros.robot.actuation`); the state then enters through ``lx``,
    ``lxx`` and ``lux``.

    Args:
        weights: ``(dU,)`` non-negative per-action-dim weights.
        reference: ``(dU, dX)`` matrix ``C``, or None.
    """

    def __init__(self, weights, reference=None) -> None:
        self.weights = _nonneg_vector(weights, "ActionCost weights")
        if self.weights.size == 0:
            raise ValueError("ActionCost weights must not be empty")
        self.reference = None
        if reference is not None:
            C = np.asarray(reference, dtype=np.float64)
            if C.ndim != 2 or C.shape[0] != self.weights.size or not np.isfinite(C).all():
                raise ValueError(f"ActionCost reference must be a finite ({self.weights.size}, dX) "
                                 f"matrix, got shape {C.shape}")
            self.reference = C

    def eval(self, X: np.ndarray, U: np.ndarray) -> CostDerivatives:
        """Evaluate on ``X (N, T, dX)``, ``U (N, T, dU)``; see :class:`CostDerivatives`."""
        X, U = _check_XU(X, U)
        N, T, dX = X.shape
        dU = U.shape[2]
        if dU != self.weights.shape[0]:
            raise ValueError(f"ActionCost has {self.weights.shape[0]} weights but U has dU={dU}")
        w = self.weights
        out = CostDerivatives.zeros(N, T, dX, dU)
        C = self.reference
        if C is not None and C.shape[1] != dX:
            raise ValueError(f"ActionCost reference has {C.shape[1]} columns but X has dX={dX}")
        R = U if C is None else U - X @ C.T                     # (N, T, dU)
        wu = w * R
        out.l[...] = 0.5 * np.einsum("ntu,ntu->nt", wu, R)
        out.lu[...] = wu
        out.luu[...] = np.diag(w)                             # broadcast (dU, dU)
        if C is not None:
            WC = w[:, None] * C                               # (dU, dX)
            out.lx[...] = -wu @ C
            out.lxx[...] = C.T @ WC
            out.lux[...] = -WC
        return out


class StateCost:
    """GPS distance penalty on a subset of state dimensions.

    With ``d = x[indices] - target`` and ``s = sum_j (wp_j d_j)^2``::

        l_t = ramp_t * (0.5 * l2 * s + l1 * sqrt(alpha + s))

    Derivatives w.r.t. ``d`` (written ``q = wp**2 * d``, ``rho = sqrt(alpha + s)``)::

        dl/dd     = ramp_t * (l2 + l1 / rho) * q
        d2l/dd2   = ramp_t * ((l2 + l1 / rho) * diag(wp**2) - l1 * q q^T / rho**3)

    and they are scattered into the ``indices`` rows/columns of ``lx``/``lxx``;
    ``lu``, ``luu``, ``lux`` are zero.

    Args:
        indices: ``(k,)`` distinct non-negative integer state indices.
        target: ``(k,)`` fixed target or ``(T, k)`` time-varying target.
        wp: ``(k,)`` non-negative per-dim weights, default ones.
        l1: weight of the smooth-l1 (``sqrt(alpha + s)``) term, ``>= 0``.
        l2: weight of the quadratic term, ``>= 0``.
        alpha: smoothing constant, ``>= 0``; must be ``> 0`` when ``l1 > 0``.
        ramp: one of :data:`RAMP_KINDS` (see :func:`ramp_weights`).
        final_multiplier: extra factor on the last time step, ``>= 0``.
    """

    def __init__(
        self,
        indices,
        target,
        wp=None,
        l1: float = 0.0,
        l2: float = 1.0,
        alpha: float = 1e-5,
        ramp: str = "constant",
        final_multiplier: float = 1.0,
    ) -> None:
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError(f"indices must be a non-empty 1-D integer array, got shape {idx.shape}")
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        if np.any(idx < 0):
            raise ValueError(f"indices must be non-negative, got {idx.tolist()}")
        if np.unique(idx).size != idx.size:
            raise ValueError(f"indices must be distinct, got {idx.tolist()}")
        self.indices = idx.astype(np.intp)
        k = self.indices.size

        tgt = np.asarray(target, dtype=np.float64)
        if tgt.ndim not in (1, 2) or tgt.shape[-1] != k:
            raise ValueError(f"target must have shape ({k},) or (T, {k}), got shape {tgt.shape}")
        if not np.all(np.isfinite(tgt)):
            raise ValueError("target must be finite")
        self.target = tgt

        self.wp = np.ones(k) if wp is None else _nonneg_vector(wp, "wp", length=k)
        self.l1 = _nonneg_scalar(l1, "l1")
        self.l2 = _nonneg_scalar(l2, "l2")
        self.alpha = _nonneg_scalar(alpha, "alpha")
        if self.l1 > 0 and self.alpha == 0:
            raise ValueError("alpha must be > 0 when l1 > 0 (the l1 term is not differentiable at d = 0)")
        if ramp not in RAMP_KINDS:
            raise ValueError(f"unknown ramp kind {ramp!r}; allowed kinds: {', '.join(RAMP_KINDS)}")
        self.ramp = ramp
        self.final_multiplier = _nonneg_scalar(final_multiplier, "final_multiplier")

    def eval(self, X: np.ndarray, U: np.ndarray) -> CostDerivatives:
        """Evaluate on ``X (N, T, dX)``, ``U (N, T, dU)``; see :class:`CostDerivatives`."""
        X, U = _check_XU(X, U)
        N, T, dX = X.shape
        dU = U.shape[2]
        if int(self.indices.max()) >= dX:
            raise ValueError(f"state index {int(self.indices.max())} out of range for dX={dX}")
        if self.target.ndim == 2 and self.target.shape[0] != T:
            raise ValueError(f"time-varying target has T={self.target.shape[0]} but X has T={T}")

        ramp = ramp_weights(self.ramp, T, self.final_multiplier)[None, :]   # (1, T)
        wp = self.wp
        d = X[:, :, self.indices] - self.target                             # (N, T, k)
        wd = wp * d                                                         # (N, T, k)

        # Overflow-safe norm of wd: scale by the largest magnitude.
        m = np.max(np.abs(wd), axis=-1)                                     # (N, T)
        m_safe = np.where(m > 0, m, 1.0)
        nrm = m * np.sqrt(np.sum((wd / m_safe[..., None]) ** 2, axis=-1))   # (N, T) = sqrt(s)

        k = self.indices.size
        l = np.zeros((N, T))
        coef = np.zeros((N, T))           # multiplies wp * wd in the gradient
        grad = np.zeros((N, T, k))
        hess = np.zeros((N, T, k, k))
        wp2 = wp * wp
        if self.l2 > 0:
            l += (0.5 * self.l2 * nrm) * nrm
            coef += self.l2
        if self.l1 > 0:
            rho = np.hypot(np.sqrt(self.alpha), nrm)                        # (N, T) > 0
            inv_rho = 1.0 / rho
            u = wd * inv_rho[..., None]                                     # |u| <= 1
            l += self.l1 * rho
            coef += self.l1 * inv_rho
            wu = wp * u                                                     # q / rho
            hess -= (self.l1 * inv_rho)[..., None, None] * (wu[..., :, None] * wu[..., None, :])
        grad += coef[..., None] * (wp * wd)
        hess += coef[..., None, None] * np.diag(wp2)

        out = CostDerivatives.zeros(N, T, dX, dU)
        out.l[...] = ramp * l
        out.lx[:, :, self.indices] = ramp[..., None] * grad
        out.lxx[:, :, self.indices[:, None], self.indices[None, :]] = ramp[..., None, None] * hess
        return out


class EEPointsCost(StateCost):
    """:class:`StateCost` on end-effector point coordinates already expressed
    relative to the target (so the target is zero).

    Args:
        ee_indices: ``(k,)`` state indices of the (target-relative) EE point coordinates.
        wp, l1, l2, alpha, ramp, final_multiplier: as in :class:`StateCost`.
    """

    def __init__(
        self,
        ee_indices,
        wp=None,
        l1: float = 0.0,
        l2: float = 1.0,
        alpha: float = 1e-5,
        ramp: str = "constant",
        final_multiplier: float = 1.0,
    ) -> None:
        k = np.asarray(ee_indices).size
        super().__init__(
            ee_indices,
            np.zeros(k),
            wp=wp,
            l1=l1,
            l2=l2,
            alpha=alpha,
            ramp=ramp,
            final_multiplier=final_multiplier,
        )


class WeightedSumCost:
    """``sum_i weights[i] * costs[i]`` with derivatives summed likewise.

    Args:
        costs: non-empty list of objects with ``eval(X, U) -> CostDerivatives``.
        weights: list of finite non-negative floats, same length as ``costs``.
    """

    def __init__(self, costs: Sequence[Cost], weights: Sequence[float]) -> None:
        costs = list(costs)
        if len(costs) == 0:
            raise ValueError("WeightedSumCost needs at least one cost")
        w = _nonneg_vector(list(weights), "WeightedSumCost weights")
        if w.shape[0] != len(costs):
            raise ValueError(f"WeightedSumCost got {len(costs)} costs but {w.shape[0]} weights")
        for c in costs:
            if not callable(getattr(c, "eval", None)):
                raise ValueError(f"cost {c!r} has no eval(X, U) method")
        self.costs = costs
        self.weights = w

    def eval(self, X: np.ndarray, U: np.ndarray) -> CostDerivatives:
        """Evaluate on ``X (N, T, dX)``, ``U (N, T, dU)``; see :class:`CostDerivatives`."""
        X, U = _check_XU(X, U)
        total = self.costs[0].eval(X, U).scaled(self.weights[0])
        for c, w in zip(self.costs[1:], self.weights[1:]):
            total = add_derivatives(total, c.eval(X, U).scaled(w))
        return total
