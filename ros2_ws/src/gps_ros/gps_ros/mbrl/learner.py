"""The lecture's other ways to get a policy out of a learned model, on the same robot interface as
GPS: MBPO and Dyna (model rollouts feeding a model-free learner) and BPTT (backpropagation through
the model into the policy).

One iteration of every learner here, for all conditions m::

    1. sample     N trials per condition with the current policy (the Sampler, as GPS: the same
                  trial counting, discarded trials replaced, in-process or over the ROS samplers);
                  exploration is the policy's own, driven by the sampler's seeded noise
    2. model      the probabilistic ensemble (:mod:`gps_ros.mbrl.ensemble`) refitted on every
                  real transition so far
    3. improve    U = ``utd`` x (new real transitions) SAC updates (:mod:`gps_ros.mbrl.sac`) on
                  minibatches of which a ``real_ratio`` are real transitions and the rest model
                  transitions; every ``rollout_every`` updates ``rollout_batch`` real states are
                  drawn and rolled out k steps with the current policy in the model (a random elite
                  per rollout, a sampled next state per step), the newest ``model_retain`` such
                  refreshes kept
    4. evaluate   one noiseless trial per condition with the deterministic policy (``evaluate``),
                  reported apart: ``eval_final_distance``; not counted as training trials

* **MBPO** (Janner et al. 2019): k from the ``rollout_length`` schedule [i0, i1, k0, k1], k0 up to
  iteration i0, linear to k1 at iteration i1, then k1.
* **Dyna** (Sutton 1991; the lecture's "Dyna-style" recipe: sample a buffer state, act with the
  policy, one model step, a model-free update): the same learner with k = 1.  It *is* MBPO's
  configuration with the schedule ``[*, *, 1, 1]``; ``algorithm.type: dyna`` fixes it.
* **BPTT** (the lecture's "backpropagate through f into the policy", with a learned value at the
  end of the horizon as its remedies suggest; cf. SVG(∞), MVE): the critics learn exactly as in
  MBPO; the actor's update is the pathwise gradient of the H-step model return from real states,
  ``J = Σ_{h<H} γ^h (r(x_h, u_h, x_{h+1}) − α log π(u_h|x_h)) + γ^H (min Q(x_H, u_H) − α log π)``,
  u_h = π(x_h, ε_h) and x_{h+1} = f_e(x_h, u_h) + σ_e ε'_h reparameterised, so ∂J/∂θ flows through
  every model step (:func:`bptt_objective`).  H = 0 is SAC's actor update.

Model rollouts stay inside the robot's limits: the joint positions are clipped to the URDF's
limits and the joint speeds to the sampler's blow-up speed at every model step (``StateBox``).
The reward is the task's cost made Markov (:class:`~gps_ros.mbrl.reward.MarkovReward`), so the
same config's cost drives GPS and these learners.

Every random draw comes from generators seeded by (run seed, iteration): a run is reproducible and a
resumed run (``kill -9``, ``gps-ros train --resume``) continues exactly as the uninterrupted one.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..algorithm import IterationResult, sample_seed
from ..control import generate_noise
from ..sample import Trajectories
from .ensemble import GaussianEnsemble
from .reward import MarkovReward
from .sac import SAC, SACActor

log = logging.getLogger(__name__)


@dataclass
class StateBox:
    """Per-dimension limits (dX,) a model state is clipped into (±inf where there are none)."""

    low: np.ndarray
    high: np.ndarray

    def __post_init__(self):
        self._lo = torch.as_tensor(self.low, dtype=torch.float32)
        self._hi = torch.as_tensor(self.high, dtype=torch.float32)

    def clip(self, x):
        """Clip torch x (B, dX); the gradient passes where x is inside."""
        return torch.maximum(torch.minimum(x, self._hi), self._lo)

    def __getstate__(self):
        return {"low": self.low, "high": self.high}

    def __setstate__(self, state):
        self.__init__(state["low"], state["high"])


class Transitions:
    """A growing (or, with ``capacity``, FIFO) store of transitions (x, u, r, x')."""

    def __init__(self, dX: int, dU: int, capacity: Optional[int] = None):
        self.dX, self.dU, self.capacity = dX, dU, capacity
        self.parts: List[tuple] = []
        self.n = 0

    def add(self, X, U, R, Xn) -> None:
        part = tuple(torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a,
                                     dtype=torch.float32).detach() for a in (X, U, R, Xn))
        if part[0].shape[0] == 0:
            return
        self.parts.append(part)
        self.n += part[0].shape[0]
        while self.capacity is not None and self.n - self.parts[0][0].shape[0] >= self.capacity:
            self.n -= self.parts.pop(0)[0].shape[0]
        self._cat = None

    def arrays(self):
        if getattr(self, "_cat", None) is None:
            self._cat = tuple(torch.cat([p[i] for p in self.parts]) for i in range(4))
        return self._cat

    def sample(self, n: int, gen: torch.Generator):
        idx = torch.randint(0, self.n, (n,), generator=gen)
        return tuple(a[idx] for a in self.arrays())

    def __getstate__(self):
        return {"dX": self.dX, "dU": self.dU, "capacity": self.capacity, "parts": self.parts,
                "n": self.n}


def transitions_of(tr: Trajectories):
    """(X, U, X') of a set of trials: every step t < T − 1 of every trial."""
    return (tr.X[:, :-1].reshape(-1, tr.dX), tr.U[:, :-1].reshape(-1, tr.dU),
            tr.X[:, 1:].reshape(-1, tr.dX))


def rollout_length(schedule: Sequence[int], iteration: int) -> int:
    """k of MBPO's schedule [i0, i1, k0, k1] at ``iteration`` (1-based)."""
    i0, i1, k0, k1 = schedule
    if iteration <= i0 or i1 <= i0:
        return int(k0 if iteration <= i0 else k1)
    frac = min(1.0, (iteration - i0) / (i1 - i0))
    return int(round(k0 + frac * (k1 - k0)))


def bptt_objective(sac: SAC, model: GaussianEnsemble, reward: MarkovReward, box: StateBox,
                   x0, horizon: int, gen: torch.Generator, gamma: float):
    """``actor_objective`` of :meth:`SAC.update` for BPTT: (−mean J, log π at the start states)
    for start states x0 (B, dX), J the H-step model return with the critic at the end (see the
    module docstring).  All noise (the actor's, the model's, the members) is drawn from ``gen``
    before the rollout, so J is a deterministic, differentiable function of the actor's
    parameters."""
    B, dX, dU = x0.shape[0], sac.dX, sac.dU
    eps_u = torch.randn(horizon + 1, B, dU, generator=gen)
    eps_x = torch.randn(horizon, B, dX, generator=gen)
    member = model.random_elites(B, gen)

    def objective(sac: SAC, alpha):
        x, J, disc, logp0 = x0, 0.0, 1.0, None
        for h in range(horizon):
            u, logp = sac.actor(x, eps_u[h])
            logp0 = logp if logp0 is None else logp0
            xn = box.clip(model.step(x, u, member, eps_x[h]))
            J = J + disc * (reward(x, u, xn) - alpha * logp)
            disc *= gamma
            x = xn
        u, logp = sac.actor(x, eps_u[horizon])
        logp0 = logp if logp0 is None else logp0
        J = J + disc * (sac.min_q(x, u) - alpha * logp)
        return -J.mean(), logp0

    return objective


class ModelBasedLearner:
    """MBPO / Dyna / BPTT (``kind``) over a Sampler; the loop of the module docstring.

    Args:
        cfg: the ``model_based`` config section (:class:`gps_ros.config.ModelBasedConfig`).
        kind: ``mbpo``, ``dyna`` or ``bptt``.
        sampler: runs a policy on a condition (``Sampler``: in-process or the ROS samplers).
        cost: the task's :class:`~gps_ros.cost.WeightedSumCost` (reward and the ``cost`` metric).
        num_conditions, T, dX, dU: the task's shape.
        action_bounds: (low, high) of the policy's actions (:func:`gps_ros.mbrl.action_range`).
        state_box: the limits model states are clipped into.
        seed: run seed.
        samples_per_condition: N trials per condition per iteration.
        distance_fn, task_metrics: as :class:`gps_ros.algorithm.LQRFLM`'s.
    """

    def __init__(self, cfg, kind: str, sampler, cost, num_conditions: int, T: int, dX: int,
                 dU: int, action_bounds, state_box: StateBox, seed: int,
                 samples_per_condition: int = 1, distance_fn: Optional[Callable] = None,
                 task_metrics: Optional[Callable] = None):
        if kind not in ("mbpo", "dyna", "bptt"):
            raise ValueError(f"model-based learner must be mbpo, dyna or bptt, not {kind!r}")
        self.cfg, self.kind = cfg, kind
        self.sampler, self.cost = sampler, cost
        self.reward = MarkovReward(cost)
        self.num_conditions, self.T, self.dX, self.dU = int(num_conditions), int(T), int(dX), int(dU)
        self.seed = int(seed)
        self.samples_per_condition = int(samples_per_condition)
        self.distance_fn, self.task_metrics = distance_fn, task_metrics
        low, high = (np.asarray(a, float) for a in action_bounds)
        self.box = state_box
        self.model = GaussianEnsemble(dX, dU, members=cfg.members, elites=cfg.elites,
                                      hidden=cfg.model_hidden, lr=cfg.model_lr,
                                      weight_decay=cfg.model_weight_decay,
                                      batch_size=cfg.model_batch_size, holdout=cfg.holdout,
                                      max_epochs=cfg.model_max_epochs, patience=cfg.model_patience,
                                      seed=seed)
        self.agent = SAC(dX, dU, low, high, hidden=cfg.hidden, lr=cfg.lr,
                         gamma=cfg.gamma, tau=cfg.tau, init_alpha=cfg.init_alpha,
                         target_entropy=cfg.target_entropy, seed=seed + 1)
        self.real = Transitions(dX, dU)
        self.imagined = Transitions(dX, dU)
        self.iteration = 0
        self.trials = 0
        self.eval_trials = 0
        self.conditions: list = []        # no local controllers (GPS's per-condition state)

    @property
    def M(self) -> int:
        return self.num_conditions

    def actor(self) -> SACActor:
        return SACActor(self.agent)

    # --- 1. sample ------------------------------------------------------------------------------
    def _sample_condition(self, m: int) -> Trajectories:
        """N valid trials of condition m with the current policy; discarded trials are replaced,
        up to 3N attempts (all counted as trials, as GPS counts them)."""
        N = self.samples_per_condition
        parts, valid, attempt = [], 0, 0
        while valid < N and attempt < 3 * N:
            n = N - valid
            seeds = [sample_seed(self.seed, self.iteration, m, attempt + i) for i in range(n)]
            noise = np.concatenate([generate_noise(1, self.T, self.dU, np.random.default_rng(s))
                                    for s in seeds])
            tr = self.sampler.sample(self.actor(), m, noise, seeds=seeds, source="policy")
            tr.mark_nonfinite()
            self.trials += tr.N
            attempt += n
            parts.append(tr)
            valid += int(tr.valid_mask.sum())
        if valid == 0:
            reason = next((t.reason for p in parts for t in p.meta if t.discarded), "unknown")
            raise RuntimeError(f"condition {m}: all {attempt} trials of the policy were discarded "
                               f"({reason}); lower model_based.action_accel / action_speed or check the robot")
        return Trajectories.concatenate(parts)

    # --- 3. improve -------------------------------------------------------------------------------
    def _rollout_length(self, iteration: int) -> int:
        if self.kind == "dyna":
            return 1
        return rollout_length(self.cfg.rollout_length, iteration)

    def _refresh_rollouts(self, k: int, gen: torch.Generator) -> None:
        """``rollout_batch`` model rollouts of k steps from real states, into the model buffer
        (which keeps the newest ``model_retain`` refreshes)."""
        cfg = self.cfg
        self.imagined.capacity = cfg.rollout_batch * k * cfg.model_retain
        x = self.real.sample(cfg.rollout_batch, gen)[0]
        with torch.no_grad():
            for _ in range(k):
                u, _ = self.agent.sample(x, gen)
                xn = self.model.step(x, u, self.model.random_elites(x.shape[0], gen),
                                     torch.randn(x.shape, generator=gen))
                xn = self.box.clip(xn)
                ok = torch.isfinite(xn).all(dim=1)
                self.imagined.add(x[ok], u[ok], self.reward(x[ok], u[ok], xn[ok]), xn[ok])
                x = xn[ok]
                if x.shape[0] == 0:
                    break

    def _batch(self, gen: torch.Generator):
        cfg = self.cfg
        n_real = cfg.batch_size if self.imagined.n == 0 else int(round(cfg.real_ratio * cfg.batch_size))
        parts = [self.real.sample(n_real, gen)] if n_real else []
        if cfg.batch_size - n_real:
            parts.append(self.imagined.sample(cfg.batch_size - n_real, gen))
        return [torch.cat(a) for a in zip(*parts)]

    def improve(self, new_transitions: int, gen: torch.Generator) -> Dict:
        cfg = self.cfg
        k = self._rollout_length(self.iteration + 1)
        updates = int(round(cfg.utd * new_transitions))
        stats: Dict[str, float] = {}
        x_real = self.real.arrays()[0]
        self.agent.set_obs_stats(x_real.mean(0).numpy(), x_real.std(0).numpy())
        done = 0
        while done < updates:
            self._refresh_rollouts(k, gen)
            for _ in range(min(cfg.rollout_every, updates - done)):
                x, u, r, xn = self._batch(gen)
                objective = None
                if self.kind == "bptt":
                    x0 = self.real.sample(cfg.batch_size, gen)[0]
                    objective = bptt_objective(self.agent, self.model, self.reward, self.box, x0,
                                               cfg.bptt_horizon, gen, cfg.gamma)
                stats = self.agent.update(x, u, r, xn, actor_objective=objective)
                done += 1
        return {"rollout_length": k, "policy_updates": updates, "model_transitions_buffered": self.imagined.n,
                **{f"sac_{key}": v for key, v in stats.items()}}

    # --- one iteration -------------------------------------------------------------------------
    def run_iteration(self) -> IterationResult:
        it = self.iteration + 1
        times: Dict[str, float] = {}
        gen = torch.Generator().manual_seed(sample_seed(self.seed, it, self.M, 2 ** 20))
        t0 = time.perf_counter()
        samples = [self._sample_condition(m) for m in range(self.M)]
        valid = [s.valid() for s in samples]
        times["sample"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        new = 0
        for tr in valid:
            X, U, Xn = transitions_of(tr)
            self.real.add(X, U, self.reward.numpy(X, U, Xn), Xn)
            new += X.shape[0]
        X, U, _, Xn = self.real.arrays()
        fit = self.model.fit(X.double().numpy(), U.double().numpy(), Xn.double().numpy())
        times["dynamics"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        improved = self.improve(new, gen)
        times["policy"] = time.perf_counter() - t0

        costs = [self.cost.eval(tr.X, tr.U).l.sum(axis=1) for tr in valid]
        returns = [self.reward.numpy(*transitions_of(tr)).reshape(tr.N, -1).sum(axis=1) for tr in valid]
        self.iteration = it
        metrics = {
            "iteration": it,
            "trials": self.trials,
            "final_distance": [float(np.mean(self.distance_fn(tr.X))) for tr in valid],
            "cost": float(np.mean([c.mean() for c in costs])),
            "cost_per_condition": [float(c.mean()) for c in costs],
            "return": float(np.mean([r.mean() for r in returns])),
            "discarded": int(sum((~s.valid_mask).sum() for s in samples)),
            **fit.as_metrics(), **improved,
        }
        if self.task_metrics is not None:
            metrics.update(self.task_metrics(valid))
        if self.cfg.evaluate:
            t0 = time.perf_counter()
            metrics.update(self.evaluate())
            times["evaluate"] = time.perf_counter() - t0
        metrics["time"] = {k: round(v, 4) for k, v in times.items()}
        metrics["time"]["total"] = round(sum(times.values()), 4)
        return IterationResult(it, samples, [], [], metrics)

    def evaluate(self) -> Dict:
        """One noiseless trial per condition with the deterministic policy: ``eval_final_distance``
        (and the task's metrics as ``eval_*``); counted as ``eval_trials``, not as trials."""
        trs = []
        for m in range(self.M):
            tr = self.sampler.sample(self.actor(), m, np.zeros((1, self.T, self.dU)),
                                     seeds=[0], source="policy")
            self.eval_trials += 1
            trs.append(tr)
        out = {"eval_trials": self.eval_trials,
               "eval_final_distance": [float(self.distance_fn(tr.X)[0]) for tr in trs]}
        if self.task_metrics is not None:
            out.update({f"eval_{k}": v for k, v in self.task_metrics(trs).items()})
        return out

    # --- state (state.pkl) ------------------------------------------------------------------------
    def state(self) -> dict:
        return {"iteration": self.iteration, "trials": self.trials, "conditions": [],
                "fitter": self.model, "model_based": {
                    "kind": self.kind, "agent": self.agent, "real": self.real,
                    "imagined": self.imagined, "eval_trials": self.eval_trials}}

    def check(self, state: dict) -> None:
        """Raise ValueError (one line) if ``state`` is not this learner's on this task."""
        mb = state.get("model_based")
        if not mb:
            raise ValueError("the saved state is not a model-based learner's (it holds GPS's "
                             "local controllers)")
        if mb["kind"] != self.kind:
            raise ValueError(f"the saved state is {mb['kind']}'s, the config asks for {self.kind}")
        a = mb["agent"]
        if (a.dX, a.dU) != (self.dX, self.dU):
            raise ValueError(f"the saved policy has dX={a.dX}, dU={a.dU}; the task has dX={self.dX}, "
                             f"dU={self.dU}")

    def restore(self, state: dict) -> None:
        """Continue from a state of :meth:`state` (checked by :meth:`check`)."""
        self.check(state)
        mb = state["model_based"]
        a = mb["agent"]
        self.iteration, self.trials = int(state["iteration"]), int(state["trials"])
        self.model, self.agent = state["fitter"], a
        self.real, self.imagined = mb["real"], mb["imagined"]
        self.eval_trials = int(mb["eval_trials"])
