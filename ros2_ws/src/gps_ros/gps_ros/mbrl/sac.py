"""Soft actor-critic (Haarnoja et al. 2018, *Soft Actor-Critic Algorithms and Applications*): the
model-free learner inside MBPO and Dyna, and the policy network of BPTT.

Our own, not stable-baselines3's (which the SAC baseline uses), because the model-based learners
need what SB3's ``learn()`` loop keeps to itself:

* the update step alone, on minibatches we compose (a ``real_ratio`` of real transitions, the rest
  model rollouts) at the update-to-data ratio we choose;
* an actor that runs inside the package's :class:`~gps_ros.agents.sim.Policy` interface,
  ``act(t, x, noise)``, drawing its exploration from the sampler's seeded standard-normal noise
  (``u = center + scale · tanh(μ(x) + σ(x) ε)``), so trials are reproducible and a ROS sampler can run
  the same actor (:func:`export_actor`: a TorchScript module taking the noise as an input);
* everything in one picklable object, the run's ``state.pkl``, for ``kill -9`` resumes.

Standard SAC otherwise: twin Q networks and Polyak-averaged targets, the tanh-squashed Gaussian with
its log-det correction, automatic entropy tuning towards ``target_entropy`` (default −dU).
Observations are standardised inside the actor and critics by statistics the learner sets
(:meth:`SAC.set_obs_stats`, the real data's), so an exported actor carries them.
"""
from __future__ import annotations

import copy
import io
import json
import math
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def mlp(n_in: int, n_out: int, hidden: Sequence[int]) -> nn.Sequential:
    layers, w = [], n_in
    for h in hidden:
        layers += [nn.Linear(w, h), nn.ReLU()]
        w = h
    layers.append(nn.Linear(w, n_out))
    return nn.Sequential(*layers)


class SquashedGaussianActor(nn.Module):
    """π(u | x): u = center + scale · tanh(μ(x̂) + σ(x̂) ε), x̂ the standardised state.

    ``forward(x, eps)`` returns (u, log π(u | x)); ``eps`` zero gives the deterministic action."""

    def __init__(self, dX: int, dU: int, hidden: Sequence[int], center: np.ndarray, scale: np.ndarray):
        super().__init__()
        self.net = mlp(dX, 2 * dU, hidden)
        self.dU = dU
        self.register_buffer("obs_mean", torch.zeros(dX))
        self.register_buffer("obs_std", torch.ones(dX))
        self.register_buffer("u_center", torch.as_tensor(center, dtype=torch.float32))
        self.register_buffer("u_scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x, eps):
        out = self.net((x - self.obs_mean) / self.obs_std)
        mu, log_std = out[..., :self.dU], out[..., self.dU:]
        log_std = torch.clamp(log_std, LOG_STD_MIN, LOG_STD_MAX)
        z = mu + torch.exp(log_std) * eps
        a = torch.tanh(z)
        # log N(z; μ, σ) − Σ log(1 − tanh² z), the latter in its stable form, − Σ log scale
        logp = (-0.5 * eps ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - (2.0 * (math.log(2.0) - z - nn.functional.softplus(-2.0 * z))).sum(-1)
        logp = logp - torch.log(self.u_scale).sum()
        return self.u_center + self.u_scale * a, logp


class ExportedActor(nn.Module):
    """The TorchScript form a sampler runs: ``forward(image, state, noise) -> u`` (image unused,
    kept for the sampler's calling convention); float32 throughout."""

    def __init__(self, actor: SquashedGaussianActor):
        super().__init__()
        self.actor = actor

    def forward(self, image, state, noise):
        return self.actor(state, noise)[0]


class TwinQ(nn.Module):
    def __init__(self, dX: int, dU: int, hidden: Sequence[int]):
        super().__init__()
        self.q1, self.q2 = mlp(dX + dU, 1, hidden), mlp(dX + dU, 1, hidden)
        self.register_buffer("obs_mean", torch.zeros(dX))
        self.register_buffer("obs_std", torch.ones(dX))
        self.register_buffer("u_center", torch.zeros(dU))
        self.register_buffer("u_scale", torch.ones(dU))

    def forward(self, x, u):
        z = torch.cat([(x - self.obs_mean) / self.obs_std, (u - self.u_center) / self.u_scale], dim=-1)
        return self.q1(z)[..., 0], self.q2(z)[..., 0]


class SAC:
    """The learner: ``update(batch)`` one gradient step of critics, actor and temperature.

    Args:
        dX, dU: state and action dimensions.
        low, high: the action range (dU,); the actor's outputs lie strictly inside.
        hidden: hidden widths of actor and critics.
        lr, gamma, tau: Adam learning rate, discount, Polyak rate of the target critics.
        init_alpha: initial temperature; target_entropy: default −dU.
        seed: network initialisation and the sampling of the updates.
    """

    def __init__(self, dX: int, dU: int, low: np.ndarray, high: np.ndarray,
                 hidden: Sequence[int] = (256, 256), lr: float = 3e-4, gamma: float = 0.99,
                 tau: float = 0.005, init_alpha: float = 0.1,
                 target_entropy: Optional[float] = None, seed: int = 0):
        low, high = np.asarray(low, float), np.asarray(high, float)
        if low.shape != (dU,) or high.shape != (dU,) or not np.all(high > low):
            raise ValueError(f"low/high must be ({dU},) with high > low")
        self.dX, self.dU = int(dX), int(dU)
        self.gamma, self.tau = float(gamma), float(tau)
        self.target_entropy = float(-dU if target_entropy is None else target_entropy)
        self.gen = torch.Generator().manual_seed(int(seed))
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(int(seed))
        try:
            self.actor = SquashedGaussianActor(dX, dU, hidden, 0.5 * (low + high), 0.5 * (high - low))
            self.critic = TwinQ(dX, dU, hidden)
        finally:
            torch.random.set_rng_state(torch_state)
        self.critic.u_center.copy_(self.actor.u_center)
        self.critic.u_scale.copy_(self.actor.u_scale)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(init_alpha), requires_grad=True)
        self.lr = float(lr)
        self._make_optimizers()
        self.updates = 0

    def _make_optimizers(self) -> None:
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=self.lr)

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def set_obs_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Standardise the networks' state inputs with ``mean`` / ``std`` (dX,) from now on."""
        std = np.maximum(np.asarray(std, float), 1e-3 * max(float(np.max(std)), 1e-9))
        for net in (self.actor, self.critic, self.critic_target):
            net.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            net.obs_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    # --- acting -------------------------------------------------------------------------------
    def act(self, x: np.ndarray, eps: Optional[np.ndarray] = None) -> np.ndarray:
        """The action (dU,) at state x (dX,) for standard-normal ``eps`` (None: deterministic)."""
        with torch.no_grad():
            xt = torch.as_tensor(np.asarray(x, dtype=np.float32))[None]
            e = torch.zeros(1, self.dU) if eps is None else torch.as_tensor(
                np.asarray(eps, dtype=np.float32))[None]
            return self.actor(xt, e)[0][0].double().numpy()

    def sample(self, x, gen: Optional[torch.Generator] = None):
        """(u, log π) for torch states x (B, dX), noise drawn from ``gen`` (default the learner's)."""
        eps = torch.randn(x.shape[0], self.dU, generator=gen or self.gen)
        return self.actor(x, eps)

    # --- learning -------------------------------------------------------------------------------
    def update(self, x, u, r, xn, done=None, actor_objective=None) -> Dict[str, float]:
        """One SAC step on a minibatch of torch tensors x (B, dX), u (B, dU), r (B,), xn (B, dX),
        ``done`` (B,) 1 where the episode terminated (default none; the end of a trial is a
        time limit, not a terminal state).

        ``actor_objective(sac, alpha) -> (loss, log π)`` replaces the actor's loss (BPTT: the
        return of a model rollout); default SAC's ``E[α log π(ũ|x) − min Q(x, ũ)]``, ``ũ ~ π(·|x)``."""
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            un, logp_n = self.sample(xn)
            q1n, q2n = self.critic_target(xn, un)
            not_done = 1.0 if done is None else 1.0 - done
            y = r + self.gamma * not_done * (torch.min(q1n, q2n) - alpha * logp_n)
        q1, q2 = self.critic(x, u)
        critic_loss = 0.5 * (((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean())
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        self.critic.requires_grad_(False)
        try:
            if actor_objective is None:
                un, logp = self.sample(x)
                actor_loss = (alpha * logp - self.min_q(x, un)).mean()
            else:
                actor_loss, logp = actor_objective(self, alpha)
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
        finally:
            self.critic.requires_grad_(True)

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for p, pt in zip(self.critic.parameters(), self.critic_target.parameters()):
                pt.mul_(1.0 - self.tau).add_(self.tau * p)
        self.updates += 1
        return {"critic_loss": float(critic_loss.detach()), "actor_loss": float(actor_loss.detach()),
                "alpha": float(alpha), "entropy": float(-logp.detach().mean())}

    def min_q(self, x, u):
        """min(Q1, Q2)(x, u) of the critics (differentiable in x and u)."""
        q1, q2 = self.critic(x, u)
        return torch.min(q1, q2)

    def __getstate__(self):
        state = dict(self.__dict__)
        for k in ("actor_opt", "critic_opt", "alpha_opt"):
            state[k] = state[k].state_dict()
        state["gen"] = self.gen.get_state()
        return state

    def __setstate__(self, state):
        opts = {k: state.pop(k) for k in ("actor_opt", "critic_opt", "alpha_opt")}
        gen = state.pop("gen")
        self.__dict__.update(state)
        self._make_optimizers()
        for k, v in opts.items():
            getattr(self, k).load_state_dict(v)
        self.gen = torch.Generator()
        self.gen.set_state(gen)


class SACActor:
    """The :class:`~gps_ros.agents.sim.Policy` a sampler runs: ``act(t, x, noise)`` with the
    sampler's standard-normal ``noise`` as the actor's ε (zero noise: the deterministic action)."""

    needs_image = False

    def __init__(self, sac: SAC):
        self.sac = sac

    def act(self, t: int, x: np.ndarray, noise: Optional[np.ndarray] = None, image=None) -> np.ndarray:
        return self.sac.act(x, noise)


class SACPolicy:
    """A model-based run's policy as ``gps-ros eval`` and ``gps-ros export`` see it: the
    deterministic SAC actor (noiseless trials) and its TorchScript export."""

    trained = True
    needs_image = False

    def __init__(self, sac: SAC):
        self.sac = sac

    def actor(self) -> SACActor:
        return SACActor(self.sac)

    def export(self, path: str | Path, X: np.ndarray) -> tuple:
        """Write :func:`export_actor` to ``path`` and check it reproduces the deterministic
        actions at the states X (..., dX); (path, the largest absolute action difference)."""
        from ..experiment import ExperimentError
        from ..policy.export import load_torchscript

        path = export_actor(self.sac.actor, path, state_indices=range(self.sac.dX))
        module, _ = load_torchscript(path)
        x = torch.as_tensor(np.asarray(X, dtype=np.float32).reshape(-1, self.sac.dX))
        zero = torch.zeros(x.shape[0], self.sac.dU)
        with torch.no_grad():
            got = module(torch.zeros(1, 1, 1, 3, dtype=torch.uint8), x, zero)
            ref = self.sac.actor(x, zero)[0]
        err = float((got - ref).abs().max())
        if err > 1e-4 * max(1.0, float(ref.abs().max())):
            raise ExperimentError(f"the export {path} does not reproduce the actor "
                                  f"(max action difference {err:.3g})")
        return path, err


def export_actor(actor: SquashedGaussianActor, path: str | Path, state_indices: Sequence[int]) -> Path:
    """Write the actor as TorchScript (``forward(image, state, noise) -> u``, see
    :class:`ExportedActor`) with a ``config.json`` that tells a sampler what to feed it:
    ``noise_input`` true (the step's standard-normal noise goes in, nothing is added to the
    output), ``state_indices`` (which entries of the GPS state form ``state``), ``use_image``
    false, ``action_dim``."""
    from ..atomic import atomic_write_bytes

    dX = actor.obs_mean.shape[0]
    mod = ExportedActor(copy.deepcopy(actor).eval())
    example = (torch.zeros(1, 1, 1, 3, dtype=torch.uint8), torch.zeros(1, dX), torch.zeros(1, actor.dU))
    config = {"kind": "sac_actor", "noise_input": True, "use_image": False,
              "state_indices": [int(i) for i in state_indices], "joint_dim": dX,
              "action_dim": int(actor.dU), "image_size": [1, 1]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(mod, example, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={"config.json": json.dumps(config)})
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
