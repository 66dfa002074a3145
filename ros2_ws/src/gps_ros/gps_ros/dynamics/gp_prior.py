"""Gaussian-process dynamics prior: the network prior's mechanism with a sparse GP as the global
model (the lecture names GP, deep net or GMM as the global prior of the local models).

The global model ``x_{t+1} = x_t + g(x_t, u_t)`` is one GP per state dimension over the
standardised ``(x, u)``: a constant mean and a scaled RBF kernel with one length scale per input
(automatic relevance determination), per output.  Sparse and variational (SVGP, Hensman et al.
2013, in GPyTorch): ``inducing`` learnt inducing points per output, fitted by minibatch Adam on the
evidence lower bound, so a refit costs ``steps`` minibatch steps whatever the buffer size, and
the model is warm-started between iterations as the network is.  Its posterior mean is linearised
at each time step's mean tuple and turned into the same normal-inverse-Wishart prior as
:class:`~gps_ros.dynamics.nn_prior.DynamicsPriorNN` (its module docstring has the formulas):
where the trials did not explore, the slopes come from the GP's posterior mean -- smooth, and
falling back to the mean function far from the data, where a network extrapolates arbitrarily.

GPyTorch (and torch) are imported lazily: ``pip install gpytorch`` for ``dynamics.type:
gp_prior``.
"""
from __future__ import annotations

import numpy as np

from .nn_prior import DynamicsPriorNN

__all__ = ["DynamicsPriorGP"]


def _svgp(inducing, n_out: int):
    """An independent-output SVGP (GPyTorch) with ``inducing`` (M, d) initial inducing points
    for each of ``n_out`` outputs, and its Gaussian likelihood (a noise per output)."""
    import gpytorch
    import torch

    M, d = inducing.shape
    batch = torch.Size([n_out])

    class SVGP(gpytorch.models.ApproximateGP):
        def __init__(self):
            dist = gpytorch.variational.CholeskyVariationalDistribution(M, batch_shape=batch)
            strategy = gpytorch.variational.IndependentMultitaskVariationalStrategy(
                gpytorch.variational.VariationalStrategy(
                    self, inducing.expand(n_out, M, d).clone(), dist,
                    learn_inducing_locations=True),
                num_tasks=n_out)
            super().__init__(strategy)
            self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch)
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.RBFKernel(ard_num_dims=d, batch_shape=batch), batch_shape=batch)

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x),
                                                             self.covar_module(x))

    likelihood = gpytorch.likelihoods.MultitaskGaussianLikelihood(num_tasks=n_out, rank=0,
                                                                  has_global_noise=False)
    return SVGP(), likelihood


class DynamicsPriorGP(DynamicsPriorNN):
    """Global sparse-GP prior over ``(x_t, u_t, x_{t+1})``; the interface of the other priors
    (``add_trials``, ``refit``, ``update``, ``eval``, ``eval_batch``, ``predict``, ``linearize``).

    Args:
        inducing: inducing points per output (initialised at buffered tuples, then learnt).
        max_samples: number of (newest) trials kept in the training buffer.
        strength: prior pseudo-count n0 (= m).
        steps: Adam steps on the ELBO per refit after the first.  first_steps: steps of the first.
        batch_size, lr: Adam minibatch size and learning rate.

        zz_floor: floor added to the (x, u) covariance of the prior, as a fraction of each
            dimension's variance over the buffer.

        seed: seed of the inducing points' initialisation and the minibatches.
        threads: torch intra-op threads while training (0: leave torch's setting).
    """

    def __init__(self, inducing: int = 64, max_samples: int = 200, strength: float = 1.0,
                 steps: int = 300, first_steps: int = 1000, batch_size: int = 256,
                 lr: float = 1e-2, zz_floor: float = 1e-2, seed: int = 0, threads: int = 1):
        import importlib.util

        if importlib.util.find_spec("gpytorch") is None:
            raise ValueError("dynamics.type gp_prior needs gpytorch: pip install 'gps_ros[gp]'")
        if inducing < 1:
            raise ValueError("inducing must be >= 1")
        super().__init__(hidden=(), max_samples=max_samples, strength=strength, steps=steps,
                         first_steps=first_steps, batch_size=batch_size, lr=lr, weight_decay=0.0,
                         zz_floor=zz_floor, seed=seed, threads=threads)
        self.inducing = int(inducing)
        self.likelihood = None

    # ------------------------------------------------------------------ the GP
    def _build(self, Z: np.ndarray, D: np.ndarray) -> None:
        import torch

        def std(a):
            s = a.std(axis=0)
            return np.maximum(s, 1e-6 * max(float(s.max()), 1e-12))
        self._stats = (Z.mean(axis=0), std(Z), D.mean(axis=0), std(D))
        zm, zs = self._stats[:2]
        rng = np.random.default_rng(self.seed)
        pick = rng.choice(len(Z), size=min(self.inducing, len(Z)), replace=False)
        self._n_inducing = len(pick)
        inducing = torch.from_numpy(((Z[pick] - zm) / zs).astype(np.float32))
        with torch.random.fork_rng(devices=[]):      # seeded, without touching the global RNG
            torch.manual_seed(self.seed)
            self.net, self.likelihood = _svgp(inducing, D.shape[1])
        self._opt = torch.optim.Adam([*self.net.parameters(), *self.likelihood.parameters()],
                                     lr=self.lr)
        self._gen = torch.Generator().manual_seed(self.seed)

    def _train(self, Zt, Dt, steps: int) -> float:
        import gpytorch
        import torch
        self.net.train()
        self.likelihood.train()
        n = Zt.shape[0]
        elbo = gpytorch.mlls.VariationalELBO(self.likelihood, self.net, num_data=n)
        bs = min(self.batch_size, n)
        loss = torch.tensor(float("nan"))
        # GPyTorch draws the variational mean's initial jitter from torch's global RNG at the
        # first step: seeded here, and the global RNG left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 7919 * self.n_refits)
            for _ in range(steps):
                idx = torch.randint(0, n, (bs,), generator=self._gen)
                loss = -elbo(self.net(Zt[idx]), Dt[idx])
                self._opt.zero_grad(set_to_none=True)
                loss.backward()
                self._opt.step()
        self.net.eval()
        self.likelihood.eval()
        return float(loss.detach())

    def _forward(self, Zt):
        """The GP's posterior mean (standardised), differentiable in the inputs.  GPyTorch caches
        the inducing covariance's factor at the first evaluation, whose float32 rounding depends
        on the call that made it: dropped before every evaluation (a few 64 x 64 factorisations),
        so a resumed run computes exactly what the uninterrupted one does."""
        self.net.train()
        self.net.eval()
        return self.net(Zt).mean

    def linearize(self, Zbar: np.ndarray):
        """f(z̄) (B, dX) and J = ∂f/∂z (B, dX, dX+dU) of the posterior mean at B points."""
        import torch
        self._check()
        zm, zs, dm, ds = self._stats
        dX = self.dX
        Zs = torch.from_numpy(((np.asarray(Zbar, np.float64) - zm) / zs).astype(np.float32))
        Zs.requires_grad_(True)
        out = self._forward(Zs)                                     # (B, dX) standardised
        # the points are independent: the gradient of output i summed over points is each
        # point's row i
        rows = [torch.autograd.grad(out[:, i].sum(), Zs, retain_graph=i < dX - 1)[0]
                for i in range(dX)]
        Js = torch.stack(rows, dim=1).double().numpy()              # (B, dX, dZ) standardised
        J = Js * (ds[:, None] / zs[None, :])
        J[:, :, :dX] += np.eye(dX)                                  # x_{t+1} = x_t + g
        fz = np.asarray(Zbar, np.float64)[:, :dX] + out.detach().double().numpy() * ds + dm
        return fz, J

    # ------------------------------------------------------------------ pickling (run state)
    def __getstate__(self):
        state = dict(self.__dict__)
        if self.net is not None:
            state["net"] = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            state["likelihood"] = {k: v.detach().clone()
                                   for k, v in self.likelihood.state_dict().items()}
            state["_opt"] = self._opt.state_dict()
            state["_gen"] = self._gen.get_state()
        return state

    def __setstate__(self, state):
        net, lik = state.pop("net"), state.pop("likelihood")
        opt, gen = state.pop("_opt"), state.pop("_gen")
        self.__dict__.update(state)
        self.net = self.likelihood = self._opt = self._gen = None
        if net is not None:
            import torch
            stats = self._stats
            M, dZ = self._n_inducing, self.dX + self.dU
            self._build(np.zeros((M, dZ)) + np.arange(M)[:, None], np.zeros((M, self.dX)))
            self._stats = stats
            self.net.load_state_dict(net)
            self.likelihood.load_state_dict(lik)
            self._opt.load_state_dict(opt)
            self._gen = torch.Generator()
            self._gen.set_state(gen)
            self.net.eval()
            self.likelihood.eval()
