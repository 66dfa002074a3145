"""Neural-network dynamics prior (Fu, Levine & Abbeel 2016, "One-shot learning of manipulation
skills with online dynamics adaptation and neural network priors").

A global network ``x_{t+1} = x_t + g(x_t, u_t)`` (an MLP in PyTorch on standardised inputs and
outputs) is trained on every buffered trial of every condition.  For the per-time-step Bayesian fit
of one condition it is linearised at the mean ``z̄ = [x̄; ū]`` of that step's N tuples,
``x_{t+1} ≈ f(z̄) + J (z − z̄)``, and turned into a normal-inverse-Wishart prior over the tuple
``[z; x_{t+1}]``::

    mu0 = [z̄; f(z̄)]
    Σ0  = [[Σzz,     Σzz Jᵀ          ],
           [J Σzz,   J Σzz Jᵀ + Σres ]]        Phi = n0 Σ0,   m = n0 = strength

Σres is the covariance of the network's residuals on its training data, and
``Σzz = S_zz + zz_floor · diag(var of the buffered z)``: the step's own empirical covariance of
(x, u) plus a small floor in every direction.  The posterior ``(Phi + N S + ...)/(N + n0)`` then
gives the slopes ``(n0 J + N F_data) / (n0 + N)`` in the directions the trials explored -- ``strength``
counts as that many pseudo-trials -- and the network's ``J`` in the directions they did not (with one
trial per condition, or a controller that never moved a joint, the data say nothing there; a GMM
prior would fill those directions with the mixture's covariance, the network fills them with its
Jacobian).

Training is incremental: the network is kept between iterations and trained ``steps`` Adam steps on
the buffer after each update (``first_steps`` the first time), so the cost per iteration is bounded
whatever the buffer size.  The input/output standardisation is fixed at the first fit (a later
change of scale would invalidate the warm start).  torch is imported lazily: the package runs without
it unless this prior (or the visuomotor policy) is used.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from .buffer import TrialBuffer

log = logging.getLogger(__name__)

__all__ = ["DynamicsPriorNN"]


class DynamicsPriorNN(TrialBuffer):
    """Global network prior over ``(x_t, u_t, x_{t+1})``; the same interface as
    :class:`~gps_ros.dynamics.prior.DynamicsPriorGMM` (``add_trials``, ``refit``, ``update``,
    ``eval``, ``eval_batch``).

    Args:
        hidden: widths of the hidden layers (SiLU activations).
        max_samples: number of (newest) trials kept in the training buffer.
        strength: prior pseudo-count n0 (= m).
        steps: Adam steps per refit after the first.  first_steps: steps of the first fit.
        batch_size, lr, weight_decay: Adam minibatch size, learning rate, L2 weight decay.

        zz_floor: floor added to the (x, u) covariance of the prior, as a fraction of each
            dimension's variance over the buffer.

        seed: seed of the network initialisation and the minibatches.

        threads: torch intra-op threads while training (0: leave torch's setting; one is fastest
            for this small network, more threads spin against each other).
    """

    def __init__(self, hidden: Sequence[int] = (128, 128), max_samples: int = 200,
                 strength: float = 1.0, steps: int = 300, first_steps: int = 1500,
                 batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-5,
                 zz_floor: float = 1e-2, seed: int = 0, threads: int = 1):
        if max_samples < 1 or steps < 0 or first_steps < 1 or batch_size < 1:
            raise ValueError("max_samples, first_steps, batch_size must be >= 1 and steps >= 0")
        if not strength > 0 or not lr > 0 or weight_decay < 0 or zz_floor < 0:
            raise ValueError("strength and lr must be > 0; weight_decay and zz_floor >= 0")
        self.hidden = [int(h) for h in hidden]
        super().__init__(max_samples)
        self.strength = float(strength)
        self.steps = int(steps)
        self.first_steps = int(first_steps)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.zz_floor = float(zz_floor)
        self.seed = int(seed)
        self.threads = int(threads)
        self.net = None
        self._opt = None
        self._gen = None
        self._stats = None          # (z_mean, z_std, d_mean, d_std) as float32 arrays
        self.res_cov: Optional[np.ndarray] = None
        self.zz_var: Optional[np.ndarray] = None
        self.n_refits = 0
        self.last_loss = float("nan")
        self.train_rms = float("nan")

    # ------------------------------------------------------------------ buffer (TrialBuffer)
    @property
    def fitted(self) -> bool:
        return self.net is not None and self.res_cov is not None

    def _pairs(self):
        Z = np.concatenate([np.concatenate([x[:-1], u[:-1]], axis=1)
                            for x, u in zip(self._X, self._U)])
        Y = np.concatenate([x[1:] for x in self._X])
        return Z, Y

    # ------------------------------------------------------------------ network
    def _build(self, Z: np.ndarray, D: np.ndarray) -> None:
        import torch
        import torch.nn as nn
        dZ, dX = Z.shape[1], D.shape[1]
        with torch.random.fork_rng(devices=[]):      # seeded, without touching the global RNG
            torch.manual_seed(self.seed)
            layers, width = [], dZ
            for h in self.hidden:
                layers += [nn.Linear(width, h), nn.SiLU()]
                width = h
            layers.append(nn.Linear(width, dX))
            self.net = nn.Sequential(*layers)
        self._opt = torch.optim.Adam(self.net.parameters(), lr=self.lr,
                                     weight_decay=self.weight_decay)
        self._gen = torch.Generator().manual_seed(self.seed)

        def std(a):
            s = a.std(axis=0)
            return np.maximum(s, 1e-6 * max(float(s.max()), 1e-12))
        self._stats = (Z.mean(axis=0), std(Z), D.mean(axis=0), std(D))

    def refit(self) -> None:
        """Train the network on the buffer (warm start; ``steps`` Adam steps, ``first_steps`` the
        first time) and recompute the residual covariance."""
        import torch
        if not self._X:
            raise RuntimeError("the prior's buffer is empty")
        Z, Y = self._pairs()
        D = Y - Z[:, :self.dX]
        first = self.net is None
        if first:
            self._build(Z, D)
        zm, zs, dm, ds = self._stats
        Zt = torch.from_numpy(((Z - zm) / zs).astype(np.float32))
        Dt = torch.from_numpy(((D - dm) / ds).astype(np.float32))
        old_threads = torch.get_num_threads()
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        # Adam with weight decay drives weights into float32 denormals, which run ~6x slower on
        # x86 (see policy.network.flush_denormals); the flag is per thread, so set it here
        torch.set_flush_denormal(True)
        try:
            self.last_loss = self._train(Zt, Dt, self.first_steps if first else self.steps)
            with torch.no_grad():
                R = (Dt - self._forward(Zt)).double().numpy() * ds
        finally:
            if self.threads > 0:
                torch.set_num_threads(old_threads)
        R = R - R.mean(axis=0)
        res = R.T @ R / max(R.shape[0] - 1, 1)
        self.res_cov = 0.5 * (res + res.T) + 1e-9 * np.mean(np.diag(res)) * np.eye(self.dX)
        self.zz_var = Z.var(axis=0)
        self.train_rms = float(np.sqrt(np.mean(R ** 2)))
        self.n_refits += 1
        log.debug("NN dynamics prior: refit %d on %d tuples, loss %.4g, residual RMS %.3g",
                  self.n_refits, Z.shape[0], self.last_loss, self.train_rms)

    def _train(self, Zt, Dt, steps: int) -> float:
        """``steps`` Adam steps of the model on standardised inputs / outputs; the last loss."""
        import torch
        self.net.train()
        n = Zt.shape[0]
        bs = min(self.batch_size, n)
        loss = torch.tensor(float("nan"))
        for _ in range(steps):
            idx = torch.randint(0, n, (bs,), generator=self._gen)
            loss = torch.mean((self.net(Zt[idx]) - Dt[idx]) ** 2)
            self._opt.zero_grad(set_to_none=True)
            loss.backward()
            self._opt.step()
        self.net.eval()
        return float(loss.detach())

    def _forward(self, Zt):
        """The model's standardised output for standardised inputs (differentiable)."""
        return self.net(Zt)

    def update(self, X, U) -> None:
        self.add_trials(X, U)
        self.refit()

    def predict(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """The network's x_{t+1} for states X (n, dX) and actions U (n, dU)."""
        import torch
        self._check()
        zm, zs, dm, ds = self._stats
        Z = np.concatenate([X, U], axis=1)
        with torch.no_grad():
            D = self._forward(torch.from_numpy(((Z - zm) / zs).astype(np.float32))).double().numpy()
        D = D * ds + dm
        return X + D

    def linearize(self, Zbar: np.ndarray):
        """f(z̄) (B, dX) and the Jacobian J = ∂f/∂z (B, dX, dX+dU) at B points z̄ (B, dX+dU)."""
        import torch
        from torch.func import jacrev, vmap
        self._check()
        zm, zs, dm, ds = self._stats
        zs_t, ds_t, zm_t, dm_t = (torch.from_numpy(a.astype(np.float32)) for a in (zs, ds, zm, dm))
        dX = self.dX
        net = self.net

        def f(z):  # one point, data units
            return z[:dX] + net((z - zm_t) / zs_t) * ds_t + dm_t

        Zb = torch.from_numpy(np.ascontiguousarray(Zbar, dtype=np.float32))
        with torch.no_grad():
            fz = vmap(f)(Zb).double().numpy()
        J = vmap(jacrev(f))(Zb).detach().double().numpy()
        # x_{t+1} = x_t + g: the identity part exactly in float64
        fz += np.asarray(Zbar, dtype=np.float64)[:, :dX] - Zb[:, :dX].double().numpy()
        return fz, J

    def _check(self) -> None:
        if not self.fitted:
            raise RuntimeError("DynamicsPriorNN has no data; call update() first")

    # ------------------------------------------------------------------ NIW prior
    def eval_batch(self, dX: int, dU: int, P: np.ndarray):
        """NIW prior for B time steps' tuples P (B, N, 2dX+dU) -> mu0 (B, D), Phi (B, D, D),
        m (B,), n0 (B,) (see the module docstring)."""
        P = np.asarray(P, dtype=np.float64)
        self._check()
        if P.shape[-1] != 2 * dX + dU or (self.dX, self.dU) != (dX, dU):
            raise ValueError(f"points of dimension {P.shape[-1]} for dX={dX}, dU={dU}; prior was "
                             f"fitted with dX={self.dX}, dU={self.dU}")
        B, N, _ = P.shape
        dZ = dX + dU
        Zs = P[..., :dZ]
        zbar = Zs.mean(axis=1)
        Zc = Zs - zbar[:, None]
        Szz = np.swapaxes(Zc, -1, -2) @ Zc / N
        Szz[:, np.arange(dZ), np.arange(dZ)] += self.zz_floor * self.zz_var + 1e-12
        fz, J = self.linearize(zbar)
        cross = J @ Szz                                         # (B, dX, dZ) = J Σzz
        Sig = np.empty((B, dZ + dX, dZ + dX))
        Sig[:, :dZ, :dZ] = Szz
        Sig[:, dZ:, :dZ] = cross
        Sig[:, :dZ, dZ:] = np.swapaxes(cross, -1, -2)
        Sig[:, dZ:, dZ:] = cross @ np.swapaxes(J, -1, -2) + self.res_cov
        Sig = 0.5 * (Sig + np.swapaxes(Sig, -1, -2))
        mu0 = np.concatenate([zbar, fz], axis=1)
        n0 = np.full(B, self.strength)
        return mu0, Sig * self.strength, n0, n0.copy()

    def eval(self, dX: int, dU: int, pts: np.ndarray):
        """NIW prior for one time step's tuples pts (N, 2dX+dU) -> mu0, Phi, m, n0."""
        mu0, Phi, m, n0 = self.eval_batch(dX, dU, np.atleast_2d(pts)[None])
        return mu0[0], Phi[0], float(m[0]), float(n0[0])

    # ------------------------------------------------------------------ pickling (run state)
    def __getstate__(self):
        state = dict(self.__dict__)
        if self.net is not None:
            state["net"] = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            state["_opt"] = self._opt.state_dict()
            state["_gen"] = self._gen.get_state()
        return state

    def __setstate__(self, state):
        net, opt, gen = state.pop("net"), state.pop("_opt"), state.pop("_gen")
        self.__dict__.update(state)
        self.net = self._opt = self._gen = None
        if net is not None:
            import torch
            Z = np.zeros((2, self.dX + self.dU))
            stats = self._stats
            self._build(Z, np.zeros((2, self.dX)))
            self._stats = stats
            self.net.load_state_dict(net)
            self._opt.load_state_dict(opt)
            self._gen = torch.Generator()
            self._gen.set_state(gen)
