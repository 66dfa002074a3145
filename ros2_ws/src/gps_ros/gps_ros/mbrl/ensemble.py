"""A probabilistic ensemble of dynamics networks (Chua et al. 2018, PETS; used by MBPO, Janner
et al. 2019): E networks, each p_e(x_{t+1} − x_t | x_t, u_t) = N(μ_e, diag σ²_e).

* The members are one module whose weights are stacked along a leading ensemble axis, so a forward
  pass of all members is a few batched matrix products (:class:`EnsembleNet`).
* Inputs [x; u] and targets Δx are standardised with the training data's mean and std (refitted at
  every :meth:`GaussianEnsemble.fit`: the networks are warm-started and follow).
* The log-variance is soft-bounded between learned limits (PETS): ``max − softplus(max − raw)``,
  then ``min + softplus(· − min)``, with a small penalty pulling the limits together, so the
  variance cannot collapse or blow up outside the data.
* Loss per member: the Gaussian negative log-likelihood ``Σ (μ − y)² / σ² + log σ²`` on its own
  shuffling of the training split.  A fixed held-out split (``holdout`` of the transitions, at most
  ``max_holdout``) measures each member's mean squared error; training stops when no member has
  improved it by more than 1 % for ``patience`` epochs (or after ``max_epochs``), each member keeps
  the weights of its best held-out epoch, and the ``elites`` best members are the ones that predict.
* :meth:`GaussianEnsemble.step` is differentiable in x and u (backpropagation through the model,
  :mod:`gps_ros.mbrl.bptt`); sampling draws a random elite per row and reparameterises
  ``Δx = μ + σ ε``.

torch is imported lazily by the package; this module needs it.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


class EnsembleLinear(nn.Module):
    """E independent affine maps applied to (E, B, n_in) -> (E, B, n_out)."""

    def __init__(self, members: int, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(members, 1, n_out))
        bound = 1.0 / np.sqrt(n_in)                     # nn.Linear's default initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleNet(nn.Module):
    """E MLPs (SiLU) with Gaussian outputs: (E, B, n_in) -> mean, log-variance (E, B, n_out),
    in standardised units."""

    def __init__(self, members: int, n_in: int, n_out: int, hidden: Sequence[int]):
        super().__init__()
        widths = [n_in, *hidden]
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(widths, widths[1:]))
        self.head = EnsembleLinear(members, widths[-1], 2 * n_out)
        self.max_logvar = nn.Parameter(torch.full((1, 1, n_out), 0.5))
        self.min_logvar = nn.Parameter(torch.full((1, 1, n_out), -10.0))
        self.n_out = n_out

    def forward(self, z):
        for layer in self.layers:
            z = nn.functional.silu(layer(z))
        out = self.head(z)
        mean, raw = out[..., :self.n_out], out[..., self.n_out:]
        logvar = self.max_logvar - nn.functional.softplus(self.max_logvar - raw)
        logvar = self.min_logvar + nn.functional.softplus(logvar - self.min_logvar)
        return mean, logvar

    def forward_rows(self, z, member):
        """Mean and log-variance (B, n_out) of member ``member[b]`` at row b of z (B, n_in): each
        member runs on its own rows only (E times cheaper than :meth:`forward` on every row)."""
        order = torch.argsort(member)
        counts = torch.bincount(member, minlength=self.head.weight.shape[0]).tolist()
        parts = []
        for e, zs in enumerate(torch.split(z[order], counts)):
            if zs.shape[0] == 0:
                continue
            for layer in self.layers:
                zs = nn.functional.silu(torch.addmm(layer.bias[e], zs, layer.weight[e]))
            parts.append(torch.addmm(self.head.bias[e], zs, self.head.weight[e]))
        out = torch.cat(parts)[torch.argsort(order)]
        mean, raw = out[:, :self.n_out], out[:, self.n_out:]
        logvar = self.max_logvar[0] - nn.functional.softplus(self.max_logvar[0] - raw)
        logvar = self.min_logvar[0] + nn.functional.softplus(logvar - self.min_logvar[0])
        return mean, logvar


@dataclass
class FitReport:
    """What one :meth:`GaussianEnsemble.fit` did."""

    transitions: int
    epochs: int
    holdout_mse: list           # per member, standardised units, at its best epoch
    elites: list
    train_nll: float

    def as_metrics(self) -> dict:
        return {"model_transitions": self.transitions, "model_epochs": self.epochs,
                "model_holdout_mse": float(np.mean([self.holdout_mse[e] for e in self.elites])),
                "model_train_nll": self.train_nll}


class GaussianEnsemble:
    """The dynamics model of the model-based learners (see the module docstring).

    Args:
        dX, dU: state and action dimensions.
        members: networks in the ensemble (MBPO: 7).  elites: how many of them predict (MBPO: 5).
        hidden: hidden widths of each network.
        lr, weight_decay, batch_size: Adam settings.
        holdout, max_holdout: held-out fraction of the transitions and its cap.
        max_epochs, patience: early stopping (see the module docstring).
        logvar_penalty: weight of the penalty on the log-variance limits.
        seed: initialisation, splits and minibatches.
    """

    def __init__(self, dX: int, dU: int, members: int = 7, elites: int = 5,
                 hidden: Sequence[int] = (200, 200, 200), lr: float = 1e-3,
                 weight_decay: float = 5e-5, batch_size: int = 256, holdout: float = 0.1,
                 max_holdout: int = 5000, max_epochs: int = 50, patience: int = 5,
                 logvar_penalty: float = 0.01, seed: int = 0):
        if not 1 <= elites <= members:
            raise ValueError(f"elites must be between 1 and members ({members}), got {elites}")
        if not 0.0 < holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {holdout}")
        self.dX, self.dU = int(dX), int(dU)
        self.members, self.n_elites = int(members), int(elites)
        self.hidden = [int(h) for h in hidden]
        self.lr, self.weight_decay, self.batch_size = float(lr), float(weight_decay), int(batch_size)
        self.holdout, self.max_holdout = float(holdout), int(max_holdout)
        self.max_epochs, self.patience = int(max_epochs), int(patience)
        self.logvar_penalty = float(logvar_penalty)
        self.gen = torch.Generator().manual_seed(int(seed))
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(int(seed))
        try:
            self.net = EnsembleNet(self.members, self.dX + self.dU, self.dX, self.hidden)
        finally:
            torch.random.set_rng_state(torch_state)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.elites = list(range(self.n_elites))
        self.stats: Optional[tuple] = None      # (z mean, z std, Δ mean, Δ std), float32 tensors
        self.fits = 0

    # --- standardisation --------------------------------------------------------------------
    @staticmethod
    def _std(a: np.ndarray) -> np.ndarray:
        s = a.std(axis=0)
        return np.maximum(s, 1e-6 * max(float(s.max()), 1e-12))

    def _set_stats(self, Z: np.ndarray, D: np.ndarray) -> None:
        self.stats = tuple(torch.as_tensor(a, dtype=torch.float32)
                           for a in (Z.mean(axis=0), self._std(Z), D.mean(axis=0), self._std(D)))

    # --- training ---------------------------------------------------------------------------
    def fit(self, X: np.ndarray, U: np.ndarray, Xn: np.ndarray) -> FitReport:
        """Train on transitions (X, U) -> Xn, (n, dX), (n, dU), (n, dX); see the module docstring."""
        X, U, Xn = (np.asarray(a, dtype=np.float64) for a in (X, U, Xn))
        n = X.shape[0]
        if n < 2 or U.shape != (n, self.dU) or X.shape != (n, self.dX) or Xn.shape != (n, self.dX):
            raise ValueError(f"fit needs n >= 2 transitions X (n, {self.dX}), U (n, {self.dU}), "
                             f"Xn (n, {self.dX}); got {X.shape}, {U.shape}, {Xn.shape}")
        Z, D = np.concatenate([X, U], axis=1), Xn - X
        self._set_stats(Z, D)
        zm, zs, dm, ds = self.stats
        Zt = (torch.as_tensor(Z, dtype=torch.float32) - zm) / zs
        Dt = (torch.as_tensor(D, dtype=torch.float32) - dm) / ds
        perm = torch.randperm(n, generator=self.gen)
        n_hold = max(1, min(self.max_holdout, int(round(self.holdout * n))))
        hold, train = perm[:n_hold], perm[n_hold:]
        if len(train) == 0:
            train = hold
        Zh, Dh = Zt[hold], Dt[hold]
        Ztr, Dtr = Zt[train], Dt[train]
        ntr = Ztr.shape[0]
        bs = min(self.batch_size, ntr)
        E = self.members
        best = self._holdout_mse(Zh, Dh)
        best_state = copy.deepcopy(self.net.state_dict())
        best_members = [best_state] * E
        since, epoch, nll = 0, 0, float("nan")
        torch.set_flush_denormal(True)      # Adam + weight decay: float32 denormals are slow
        while epoch < self.max_epochs and since < self.patience:
            epoch += 1
            order = torch.stack([torch.randperm(ntr, generator=self.gen) for _ in range(E)])
            self.net.train()
            total, count = 0.0, 0
            for s in range(0, ntr, bs):
                idx = order[:, s:s + bs]                          # (E, b)
                mean, logvar = self.net(Ztr[idx])
                inv = torch.exp(-logvar)
                loss = (((mean - Dtr[idx]) ** 2) * inv + logvar).mean(dim=(1, 2)).sum()
                loss = loss + self.logvar_penalty * (self.net.max_logvar.sum() - self.net.min_logvar.sum())
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                total += float(loss.detach()) * idx.shape[1]
                count += idx.shape[1]
            nll = total / max(count, 1) / E
            mse = self._holdout_mse(Zh, Dh)
            improved = (best - mse) / np.maximum(np.abs(best), 1e-12) > 0.01
            if improved.any():
                state = copy.deepcopy(self.net.state_dict())
                for e in np.flatnonzero(improved):
                    best_members[e] = state
                    best[e] = mse[e]
                since = 0
            else:
                since += 1
        self._load_members(best_members)
        self.net.eval()
        self.elites = [int(e) for e in np.argsort(best)[:self.n_elites]]
        self.fits += 1
        report = FitReport(n, epoch, [float(v) for v in best], self.elites, float(nll))
        log.debug("ensemble fit %d: %d transitions, %d epochs, held-out MSE %s, elites %s",
                  self.fits, n, epoch, np.round(best, 4), self.elites)
        return report

    def _holdout_mse(self, Zh, Dh) -> np.ndarray:
        self.net.eval()
        with torch.no_grad():
            mean, _ = self.net(Zh.expand(self.members, *Zh.shape))
            return ((mean - Dh) ** 2).mean(dim=(1, 2)).double().numpy()

    def _load_members(self, states: list) -> None:
        """Each member's parameters from its own best state (the ensemble axis is axis 0; the
        shared log-variance limits from the last state)."""
        merged = copy.deepcopy(states[-1])
        for key, value in merged.items():
            if key.endswith("logvar"):
                continue
            for e, st in enumerate(states):
                value[e] = st[key][e]
        self.net.load_state_dict(merged)

    # --- prediction ---------------------------------------------------------------------------
    def predict(self, x, u):
        """Mean and variance of x_{t+1} under every member: torch (E, B, dX) each, for x (B, dX)
        and u (B, dU) torch tensors (float32; differentiable)."""
        if self.stats is None:
            raise RuntimeError("the ensemble has not been fitted")
        zm, zs, dm, ds = self.stats
        z = (torch.cat([x, u], dim=-1) - zm) / zs
        mean, logvar = self.net(z.expand(self.members, *z.shape))
        return x + mean * ds + dm, torch.exp(logvar) * ds ** 2

    def step(self, x, u, member: Optional[torch.Tensor] = None, eps: Optional[torch.Tensor] = None):
        """x_{t+1} for torch x (B, dX), u (B, dU): member ``member[b]`` (default: a random elite per
        row), mean plus ``sqrt(var) * eps`` (``eps`` (B, dX) standard normal; None: the mean).
        Differentiable in x and u."""
        if self.stats is None:
            raise RuntimeError("the ensemble has not been fitted")
        if member is None:
            member = self.random_elites(x.shape[0])
        zm, zs, dm, ds = self.stats
        mean, logvar = self.net.forward_rows((torch.cat([x, u], dim=-1) - zm) / zs, member)
        out = x + mean * ds + dm
        if eps is not None:
            out = out + torch.exp(0.5 * logvar) * ds * eps
        return out

    def random_elites(self, n: int, gen: Optional[torch.Generator] = None) -> torch.Tensor:
        """n members drawn uniformly from the elites."""
        pick = torch.randint(0, len(self.elites), (n,), generator=gen or self.gen)
        return torch.as_tensor(self.elites)[pick]

    def mean_prediction(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """The elites' average mean of x_{t+1} for numpy X (n, dX), U (n, dU)."""
        with torch.no_grad():
            mean, _ = self.predict(torch.as_tensor(X, dtype=torch.float32),
                                   torch.as_tensor(U, dtype=torch.float32))
        return mean[self.elites].mean(dim=0).double().numpy()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["gen"] = self.gen.get_state()
        state["opt"] = self.opt.state_dict()
        return state

    def __setstate__(self, state):
        gen, opt = state.pop("gen"), state.pop("opt")
        self.__dict__.update(state)
        self.gen = torch.Generator()
        self.gen.set_state(gen)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.opt.load_state_dict(opt)
