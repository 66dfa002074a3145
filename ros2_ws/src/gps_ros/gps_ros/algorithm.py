"""The GPS loop, written once over stage interfaces.

One LQR-FLM iteration (Levine & Abbeel 2014), for all conditions m at once::

    1. sample      N trials per condition with the current local controller p_m   (Sampler)
    2. dynamics    GMM prior on all conditions' recent tuples, per-t Bayesian fit   (DynamicsFitter)
    3. cost        quadratic cost expansion along the samples
    5. step size   predicted vs actual improvement of the previous step -> ε_m
    6. C-step      KL(p_m' ‖ p_m) ≈ ε_m, batched over conditions                   (TrajectoryOptimizer)
                   — the LQR, or PI² / PILQR from the samples (``algorithm.traj_opt``)

The stages are Protocols: in-process they are plain objects, in ROS they are proxies calling the
nodes' actions and services; this loop is the same in both.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol, Sequence

import numpy as np

from .config import AlgorithmConfig
from .control import (LinearGaussianController, LQRResult, QuadraticCost, estimate_cost,
                      generate_noise, kl_constrained_lqr, traj_kl)
from .sample import Trajectories

log = logging.getLogger(__name__)


# --- stage interfaces ------------------------------------------------------------------------
class Sampler(Protocol):
    def sample(self, policy, condition: int, noise: Optional[np.ndarray] = None,
               seeds: Optional[List[int]] = None, source: str = "controller") -> Trajectories: ...


class DynamicsFitter(Protocol):
    def fit(self, trajs: Sequence[Trajectories]) -> list: ...


class TrajectoryOptimizer(Protocol):
    """The C-step.  ``samples`` (one Trajectories per condition, drawn from ``prev``) and
    ``sample_costs`` (their per-step costs, (N, T) per condition) are what the sample-based
    optimisers (PI², PILQR) need; the LQR ignores them."""

    def optimize(self, dynamics: Sequence, costs: Sequence[QuadraticCost],
                 prev: Sequence[LinearGaussianController], epsilon: Sequence[float],
                 eta0: Sequence[float], samples: Optional[Sequence[Trajectories]] = None,
                 sample_costs: Optional[Sequence[np.ndarray]] = None) -> List[LQRResult]: ...


class KLConstrainedLQR:
    """In-process TrajectoryOptimizer: :func:`kl_constrained_lqr`, batched over conditions."""

    def __init__(self, cfg: AlgorithmConfig):
        self.cfg = cfg

    def optimize(self, dynamics, costs, prev, epsilon, eta0, samples=None, sample_costs=None):
        return kl_constrained_lqr(dynamics, costs, prev, epsilon, eta0,
                                  tolerance=self.cfg.kl_tolerance,
                                  max_iterations=self.cfg.max_eta_iterations,
                                  min_eta=self.cfg.min_eta, max_eta=self.cfg.max_eta)


def build_trajectory_optimizer(cfg: AlgorithmConfig,
                               lqr: Optional[TrajectoryOptimizer] = None) -> TrajectoryOptimizer:
    """The C-step for ``cfg.traj_opt``: ``lqr`` -> ``lqr`` or a new :class:`KLConstrainedLQR`;
    ``pi2`` -> :class:`gps_ros.control.pi2.PI2` (runs here: it needs only the samples);
    ``pilqr`` -> :class:`gps_ros.control.pilqr.PILQR` around ``lqr`` (e.g. the ROS proxy of the
    trajopt node) or a new :class:`KLConstrainedLQR`."""
    from .control.pi2 import PI2
    from .control.pilqr import PILQR

    kind = cfg.traj_opt
    if kind == "lqr":
        return lqr if lqr is not None else KLConstrainedLQR(cfg)
    if kind == "pi2":
        return PI2.from_config(cfg)
    if kind == "pilqr":
        return PILQR(lqr if lqr is not None else KLConstrainedLQR(cfg), PI2.from_config(cfg))
    raise ValueError(f"algorithm.traj_opt must be lqr, pi2 or pilqr, not {kind!r}")


# --- per-condition state ---------------------------------------------------------------------
@dataclass
class ConditionState:
    controller: LinearGaussianController
    eta: float = 1.0
    step_mult: float = 1.0
    # from the previous iteration, for step-size adaptation
    prev_controller: Optional[LinearGaussianController] = None
    prev_reference: Optional[LinearGaussianController] = None   # what the last step was KL'd against
    prev_dynamics: Optional[object] = None
    prev_cost: Optional[QuadraticCost] = None
    last_kl: float = float("nan")


@dataclass
class IterationResult:
    iteration: int
    samples: List[Trajectories]
    dynamics: list
    lqr: List[LQRResult]
    metrics: Dict = field(default_factory=dict)


def sample_seed(seed: int, iteration: int, condition: int, trial: int) -> int:
    """A trial's noise seed, a pure function of (run seed, iteration, condition, trial)."""
    return int(np.random.SeedSequence([seed, iteration, condition, trial]).generate_state(1)[0])


def step_multiplier(prev_laplace: float, new_predicted: float, new_actual: float,
                    step_mult: float, min_mult: float, max_mult: float) -> float:
    """Adapt the KL step from predicted vs actual cost improvement (Levine & Abbeel 2014, §3.1).

    The improvement predicted under the old dynamics is compared with the one measured under the new
    fit; the step grows when the model predicted well and shrinks when it over-promised: the
    factor predicted / (2 max(1e-4, predicted - actual)), clipped to [0.1, 5] (0.1 when an
    estimate is not finite), times ``step_mult``, clipped to [min_mult, max_mult].
    """
    predicted = prev_laplace - new_predicted
    actual = prev_laplace - new_actual
    if np.isfinite(predicted) and np.isfinite(actual):
        mult = float(np.clip(predicted / (2.0 * max(1e-4, predicted - actual)), 0.1, 5.0))
    else:       # an estimate that is not finite says nothing good about the model: shrink
        mult = 0.1
    return float(np.clip(mult * step_mult, min_mult, max_mult))


class LQRFLM:
    """LQR with fitted local models: the local-controller half of guided policy search.

    Args:
        cfg: algorithm section of the experiment config.
        sampler: runs a controller on a condition (``Sampler``).
        fitter: fits per-condition linear-Gaussian dynamics (``DynamicsFitter``).
        cost: the task cost (``eval(X, U) -> CostDerivatives``).
        controllers: initial controller per condition.
        seed: run seed; trial noise is a pure function of (seed, iteration, condition, trial).
        distance_fn: (N, T, dX) -> (N,) end-effector distance at the final step, for reporting.
        noise_kwargs: ``smooth`` / ``sigma`` passed to :func:`generate_noise`.

        task_metrics: valid trials per condition -> extra metrics of the task (e.g. the peg's
            insertion depth and success per condition); None: none.
        optimizer: ``TrajectoryOptimizer``; defaults to :func:`build_trajectory_optimizer` of
            ``cfg`` (the in-process batched LQR, PI² or PILQR by ``cfg.traj_opt``).  The step-size
            rule follows ``cfg.traj_opt``: lqr adapts ε by predicted vs actual improvement, pilqr
            by the residual ratio, pi2 keeps its fixed budget.
    """

    def __init__(self, cfg: AlgorithmConfig, sampler: Sampler, fitter: DynamicsFitter, cost,
                 controllers: Sequence[LinearGaussianController], seed: int, distance_fn,
                 noise_kwargs: Optional[dict] = None,
                 optimizer: Optional[TrajectoryOptimizer] = None,
                 task_metrics: Optional[Callable[[List[Trajectories]], Dict]] = None):
        self.cfg = cfg
        self.sampler = sampler
        self.fitter = fitter
        self.cost = cost
        self.seed = seed
        self.distance_fn = distance_fn
        self.noise_kwargs = noise_kwargs or {}
        self.task_metrics = task_metrics
        self.optimizer = optimizer or build_trajectory_optimizer(cfg)
        self.conditions = [ConditionState(c.copy()) for c in controllers]
        self.iteration = 0          # number of completed iterations
        self._rejected: Dict[int, int] = {}     # this iteration: condition -> trials discarded
        self.trials = 0             # trials run so far (incl. discarded)

    @property
    def M(self) -> int:
        return len(self.conditions)

    # --- stage 1 ---------------------------------------------------------------------------
    def _sampling_policy(self, m: int):
        """(actor, source) that samples condition m: here the local controller."""
        return self.conditions[m].controller, "controller"

    def _sample_condition(self, m: int) -> Trajectories:
        """N valid trials of condition m.  Discarded trials (blown up, non-finite) are replaced by
        new ones, up to 3N in all.  If most of the first N trials of a *new* local controller are
        discarded, the step that produced it is rejected (contact-rich tasks: an over-long KL
        step can command torques that spin a joint up when the peg jams): the condition goes back
        to its previous controller, its step multiplier is cut tenfold, and it samples again."""
        N = self.cfg.samples_per_condition
        st = self.conditions[m]
        ctrl = st.controller
        actor, source = self._sampling_policy(m)
        parts, valid, attempt = [], 0, 0
        while valid < N:
            n = N - valid
            seeds = [sample_seed(self.seed, self.iteration, m, attempt + i) for i in range(n)]
            noise = np.concatenate([
                generate_noise(1, ctrl.T, ctrl.dU, np.random.default_rng(s), **self.noise_kwargs)
                for s in seeds])
            tr = self.sampler.sample(actor, m, noise, seeds=seeds, source=source)
            tr.mark_nonfinite()
            self.trials += tr.N
            attempt += n
            parts.append(tr)
            valid += int(tr.valid_mask.sum())
            if (attempt == n == N and source == "controller" and st.prev_controller is not None
                    and 2 * (N - valid) > N):
                log.warning("condition %d: %d of %d trials of the new controller discarded (%s); "
                            "rejecting its step: back to the previous controller, step x0.1",
                            m, N - valid, N, next((t.reason for t in tr.meta if t.discarded), "?"))
                st.controller = ctrl = st.prev_controller
                st.step_mult = max(self.cfg.min_step_mult, 0.1 * st.step_mult)
                st.prev_controller = st.prev_reference = st.prev_dynamics = st.prev_cost = None
                actor, source = self._sampling_policy(m)
                self._rejected[m] = N - valid
                parts, valid = [], 0              # the rejected controller's trials are not used
                continue
            if valid < N and attempt >= 3 * N:
                if valid >= 2:
                    log.warning("condition %d: only %d of %d trials valid; continuing", m, valid, N)
                    break
                raise RuntimeError(f"condition {m}: {attempt - valid} of {attempt} trials were "
                                   f"discarded ({tr.meta[0].reason or 'unknown reason'}); "
                                   "check the robot and the controller")
        return Trajectories.concatenate(parts)

    # --- one iteration ------------------------------------------------------------------------
    def run_iteration(self) -> IterationResult:
        it = self.iteration + 1
        times = {}
        self._rejected = {}
        t0 = time.perf_counter()
        samples = [self._sample_condition(m) for m in range(self.M)]
        valid = [s.valid() for s in samples]
        times["sample"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        dynamics = self.fitter.fit(valid)
        times["dynamics"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        costs, step_costs = [], []
        for tr in valid:
            d = self.cost.eval(tr.X, tr.U)
            costs.append(QuadraticCost.from_derivatives(tr.X, tr.U, d))
            step_costs.append(np.asarray(d.l))            # (N, T): PI² / PILQR use it per step
        sample_costs = [c.sum(axis=1) for c in step_costs]   # (N,)
        times["cost"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        refs = self._references(valid)
        times["linearize"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        rule = self.cfg.traj_opt
        residuals = []
        for m, st in enumerate(self.conditions):
            if rule == "pilqr":
                residuals.append(self._adapt_step_residual(st, dynamics[m], costs[m], valid[m],
                                                           step_costs[m]))
            elif rule == "lqr":
                self._adapt_step(st, refs[m], dynamics[m], costs[m])
            # pi2: the step is the fixed per-step budget algorithm.pi2_kl_step
        times["step_size"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        T = self.conditions[0].controller.T
        kl_step = self._step_bounds()[0]
        eps = [kl_step * st.step_mult * T for st in self.conditions]
        results = self.optimizer.optimize(dynamics, self._lqr_costs(costs, valid), refs, eps,
                                          [st.eta for st in self.conditions],
                                          samples=valid, sample_costs=step_costs)
        times["lqr"] = time.perf_counter() - t0

        for m, (st, res) in enumerate(zip(self.conditions, results)):
            st.prev_controller = st.controller
            st.prev_reference = refs[m]
            st.prev_dynamics = dynamics[m]
            st.prev_cost = costs[m]
            st.controller = res.controller
            st.eta = res.eta
            st.last_kl = res.kl

        extra = self._after_lqr(valid, times)
        self.iteration = it
        final_dist = [float(np.mean(self.distance_fn(tr.X))) for tr in valid]
        metrics = {
            "iteration": it,
            "trials": self.trials,
            "final_distance": final_dist,
            "cost": float(np.mean([c.mean() for c in sample_costs])),
            "cost_per_condition": [float(c.mean()) for c in sample_costs],
            "discarded": int(sum((~s.valid_mask).sum() for s in samples)) + sum(self._rejected.values()),
            "kl": [float(r.kl) for r in results],
            "epsilon": [float(r.epsilon) for r in results],
            "eta": [float(r.eta) for r in results],
            "step_mult": [float(st.step_mult) for st in self.conditions],
            "lqr_converged": [bool(r.converged) for r in results],
            "time": {k: round(v, 4) for k, v in times.items()},
        }
        if self._rejected:
            metrics["rejected_step"] = [m in self._rejected for m in range(self.M)]
        if residuals:
            metrics["residual_ratio"] = residuals
        if all(getattr(r, "weight_kl", None) is not None for r in results):
            metrics["pi2_weight_kl"] = [float(np.mean(r.weight_kl)) for r in results]
            metrics["pi2_cov_scale"] = [float(np.mean(r.cov_scale)) for r in results]
        if self.task_metrics is not None:
            metrics.update(self.task_metrics(valid))
        metrics.update(extra)
        metrics["time"]["total"] = round(sum(times.values()), 4)
        return IterationResult(it, samples, dynamics, results, metrics)

    # --- what MDGPS changes ---------------------------------------------------------------------
    def _step_bounds(self):
        """(kl_step, min_step_mult, max_step_mult) of this iteration's C-step."""
        return self.cfg.kl_step, self.cfg.min_step_mult, self.cfg.max_step_mult

    def _references(self, valid: List[Trajectories]) -> List[LinearGaussianController]:
        """The distribution each new controller is KL-constrained against: the current local
        controller (LQR-FLM)."""
        return [st.controller for st in self.conditions]

    def _adapt_step(self, st: ConditionState, ref, dynamics, cost: QuadraticCost) -> None:
        """LQR-FLM step adaptation: the last step's improvement predicted under the old model vs
        the one measured under the new model."""
        if st.prev_controller is None:
            return
        prev_laplace = estimate_cost(st.prev_controller, st.prev_dynamics, st.prev_cost)
        new_pred = estimate_cost(st.controller, st.prev_dynamics, st.prev_cost)
        new_actual = estimate_cost(st.controller, dynamics, cost)
        st.step_mult = step_multiplier(prev_laplace, new_pred, new_actual, st.step_mult,
                                       *self._step_bounds()[1:])

    def _adapt_step_residual(self, st: ConditionState, dynamics, cost: QuadraticCost,
                             tr: Trajectories, step_costs: np.ndarray) -> float:
        """PILQR step rule (Chebotar et al. 2017, ``res_percent``): the fraction of this
        iteration's sample cost that the new local model does not explain (its residual, see
        :func:`gps_ros.control.pilqr.residual_ratio`) halves the LQR step above
        ``pilqr_res_ratio_dec`` and doubles it below ``pilqr_res_ratio_inc``; the PI² budget is
        fixed.  Returns the ratio (a metric)."""
        from .control.pilqr import residual_ratio

        ratio = residual_ratio(dynamics, cost, st.controller, tr.X, tr.U, step_costs)
        if st.prev_controller is not None:
            if ratio > self.cfg.pilqr_res_ratio_dec:
                mult = 0.5
            elif ratio < self.cfg.pilqr_res_ratio_inc:
                mult = 2.0
            else:
                mult = 1.0
            st.step_mult = float(np.clip(mult * st.step_mult, self.cfg.min_step_mult,
                                         self.cfg.max_step_mult))
        return ratio

    def _lqr_costs(self, costs: List[QuadraticCost], valid: List[Trajectories]) -> List[QuadraticCost]:
        """The costs the C-step optimises (BADMM augments them with the policy term)."""
        return costs

    def _after_lqr(self, valid: List[Trajectories], times: Dict[str, float]) -> Dict:
        """Hook after the C-step (MDGPS distils the new controllers here); returns extra metrics."""
        return {}


class PolicyStage(Protocol):
    """The global policy as the MDGPS loop sees it (S-step, sampling and linearisation)."""

    trained: bool

    def actor(self): ...

    def predict(self, trajs: Trajectories) -> np.ndarray: ...

    def covariance(self) -> np.ndarray: ...

    def train(self, trajs: Sequence[Trajectories],
              controllers: Sequence[LinearGaussianController]) -> Dict: ...


class MDGPS(LQRFLM):
    """Guided policy search via approximate mirror descent (Montgomery & Levine 2016).

    The same loop as :class:`LQRFLM` with three changes: each local controller is KL-constrained
    against the *linearised global policy* instead of its predecessor (C-step), the new controllers
    are distilled into the global policy on all conditions' samples (S-step), and — on-policy —
    the trials are run with the global policy once it has been trained.

    Args (beyond :class:`LQRFLM`'s):
        policy: the global policy (``PolicyStage``), e.g. :class:`gps_ros.policy.GlobalPolicy`.
        policy_prior: a :class:`gps_ros.dynamics.PolicyPriorGMM` for the linearisation, or None.
        on_policy: sample the global policy (True) or the local controllers (False).
        linearization: ``"regression"`` (per-t fit with the policy prior) or ``"jacobian"``.

        warmup_iterations: the first iterations sample the local controllers and take LQR-FLM
            C-steps (KL against the previous controller) while the S-step already distils; a freshly initialised visuomotor
            network is a poor reference, and C-steps against it pull every condition towards its
            average behaviour (seen: the step sizes collapse and η explodes by iteration 5).
        warmup_kl_step, warmup_max_step_mult: the warm-up's C-step sizes (default: the
            algorithm's).  The warm-up steps are plain LQR-FLM steps, which tolerate LQR-FLM's
            larger steps; MDGPS's small ones are needed only once the C-step is taken against the
            network.  At the boundary the multipliers are clipped into the MDGPS range.
    """

    def __init__(self, *args, policy: PolicyStage, policy_prior=None, on_policy: bool = True,
                 linearization: str = "regression", warmup_iterations: int = 0,
                 warmup_kl_step: Optional[float] = None,
                 warmup_max_step_mult: Optional[float] = None, **kwargs):
        super().__init__(*args, **kwargs)
        if linearization not in ("regression", "jacobian"):
            raise ValueError(f"linearization must be regression or jacobian, not {linearization!r}")
        self.policy = policy
        self.policy_prior = policy_prior
        self.on_policy = on_policy
        self.linearization = linearization
        self.warmup_iterations = warmup_iterations
        self.warmup_kl_step = warmup_kl_step
        self.warmup_max_step_mult = warmup_max_step_mult

    def _in_warmup(self) -> bool:
        return not self.policy.trained or self.iteration < getattr(self, "warmup_iterations", 0)

    def _step_bounds(self):
        kl, lo, hi = super()._step_bounds()
        # getattr: run states pickled before these options existed resume unchanged
        wkl, whi = getattr(self, "warmup_kl_step", None), getattr(self, "warmup_max_step_mult", None)
        if self.iteration < getattr(self, "warmup_iterations", 0):
            kl = wkl if wkl is not None else kl
            hi = whi if whi is not None else hi
        return kl, lo, hi

    def _sampling_policy(self, m: int):
        if self.on_policy and not self._in_warmup():
            return self.policy.actor(), "policy"
        return super()._sampling_policy(m)

    def _references(self, valid: List[Trajectories]) -> List[LinearGaussianController]:
        # first iteration: nothing to linearise yet; warm-up: LQR-FLM C-steps while the policy
        # is distilled from ever better controllers
        if self._in_warmup():
            return super()._references(valid)
        return self._linearize(valid)

    def _linearize(self, valid: List[Trajectories]) -> List[LinearGaussianController]:
        """π̄: the global policy's time-varying linear-Gaussian fit along each condition's samples."""
        from .policy.linearize import linearize_policy, linearize_policy_jacobian

        U_pi = [self.policy.predict(tr) for tr in valid]
        cov = self.policy.covariance()
        if self.linearization == "jacobian":
            return [linearize_policy_jacobian(tr.X, u, self.policy.state_jacobian(tr, tr.X.shape[2]),
                                              cov) for tr, u in zip(valid, U_pi)]
        if self.policy_prior is not None:
            self.policy_prior.update(np.concatenate([tr.X for tr in valid]), np.concatenate(U_pi))
        return [linearize_policy(tr.X, u, cov, self.policy_prior) for tr, u in zip(valid, U_pi)]

    def _adapt_step(self, st: ConditionState, ref, dynamics, cost: QuadraticCost) -> None:
        """MDGPS step rule: the improvement the last C-step predicted over the global policy's old
        linearisation vs the improvement of the new linearisation, both costed as Laplace
        estimates under their own iteration's model."""
        warmup = getattr(self, "warmup_iterations", 0)
        if st.prev_reference is None or (warmup and self.iteration == warmup):
            # nothing to compare, or the first C-step against the policy: the last reference was
            # a controller, and a policy that is worse than it is not a failed step
            st.step_mult = float(np.clip(st.step_mult, *self._step_bounds()[1:]))
            return
        prev_laplace = estimate_cost(st.prev_reference, st.prev_dynamics, st.prev_cost)
        prev_predicted = estimate_cost(st.controller, st.prev_dynamics, st.prev_cost)
        cur_laplace = estimate_cost(ref, dynamics, cost)
        st.step_mult = step_multiplier(prev_laplace, prev_predicted, cur_laplace, st.step_mult,
                                       *self._step_bounds()[1:])

    def _after_lqr(self, valid: List[Trajectories], times: Dict[str, float]) -> Dict:
        t0 = time.perf_counter()
        out = self.policy.train(valid, [st.controller for st in self.conditions])
        times["distill"] = time.perf_counter() - t0
        extra = {k: float(v) for k, v in out.items() if k.startswith("pretrain_")}
        return {"distill_loss": float(out["loss_end"]), **extra}


class BADMM(MDGPS):
    """BADMM-style guided policy search (Levine, Finn et al. 2016), as a penalty on the C-step.

    The C-step is LQR-FLM's (KL against the previous controller, controllers sample) on the
    augmented cost c̃ = c − λ_m log π̄_θ(u | x), π̄ the policy's linearisation along the samples;
    the dual λ_m is adapted by dual ascent on KL(p_m ‖ π̄) against ``target_kl`` per step
    (log λ += log(KL / target), at most ×4 per iteration), so controllers that drift away from
    what the network can reproduce are pulled back.  The S-step distils as in MDGPS.  (The JMLR
    paper's BADMM keeps per-time-step vector duals on the action means; one scalar weight per
    condition is the simpler form given in our design notes.)

    Args (beyond :class:`MDGPS`'s): ``lambda0`` the initial weight, ``target_kl`` per time step.
    """

    def __init__(self, *args, lambda0: float = 1e-2, target_kl: float = 0.5, **kwargs):
        kwargs["on_policy"] = False
        super().__init__(*args, **kwargs)
        self.lambdas = np.full(self.M, float(lambda0))
        self.target_kl = float(target_kl)
        self._pibar: Optional[List[LinearGaussianController]] = None

    def _references(self, valid: List[Trajectories]) -> List[LinearGaussianController]:
        self._pibar = self._linearize(valid) if self.policy.trained else None
        return [st.controller for st in self.conditions]

    def _adapt_step(self, st: ConditionState, ref, dynamics, cost: QuadraticCost) -> None:
        LQRFLM._adapt_step(self, st, ref, dynamics, cost)

    def _lqr_costs(self, costs: List[QuadraticCost], valid: List[Trajectories]) -> List[QuadraticCost]:
        if self._pibar is None:
            return costs
        return [augment_with_policy(c, pi, lam) for c, pi, lam in zip(costs, self._pibar, self.lambdas)]

    def _after_lqr(self, valid: List[Trajectories], times: Dict[str, float]) -> Dict:
        out = {}
        if self._pibar is not None:
            kls = []
            T = self.conditions[0].controller.T
            for m, (st, pi) in enumerate(zip(self.conditions, self._pibar)):
                mu, sigma = _marginals(st.controller, st.prev_dynamics)
                kl = float(traj_kl(mu, sigma, st.controller, pi).sum())
                kls.append(kl)
                step = np.clip(np.log(max(kl, 1e-12) / (self.target_kl * T)), -np.log(4), np.log(4))
                self.lambdas[m] = float(np.clip(self.lambdas[m] * np.exp(step), 1e-8, 1e8))
            out = {"kl_to_policy": kls, "badmm_lambda": self.lambdas.tolist()}
        out.update(super()._after_lqr(valid, times))
        return out


def augment_with_policy(cost: QuadraticCost, pi: LinearGaussianController, lam: float) -> QuadraticCost:
    """c + λ·(−log π̄(u|x)) up to a constant: with r = u − K̄x − k̄ = A·xu − k̄, A = [−K̄, I],
    ½ λ rᵀ P r adds λ AᵀPA to Cm, −λ AᵀP k̄ to cv and ½ λ k̄ᵀP k̄ to cc (P = Σ̄⁻¹)."""
    T, dU, dX = pi.K.shape
    A = np.concatenate([-pi.K, np.broadcast_to(np.eye(dU), (T, dU, dU))], axis=2)   # (T, dU, dXU)
    P = pi.inv_pol_covar
    AtP = np.swapaxes(A, 1, 2) @ P                                                  # (T, dXU, dU)
    Cm = cost.Cm + lam * AtP @ A
    cv = cost.cv - lam * np.einsum("tiu,tu->ti", AtP, pi.k)
    cc = cost.cc + 0.5 * lam * np.einsum("tu,tuv,tv->t", pi.k, P, pi.k)
    return QuadraticCost(0.5 * (Cm + np.swapaxes(Cm, 1, 2)), cv, cc)


def _marginals(controller: LinearGaussianController, dynamics):
    from .control.lqr import forward_pass

    mu, sigma = forward_pass(dynamics.Fm[None], dynamics.fv[None], dynamics.dyn_covar[None],
                             dynamics.x0mu[None], dynamics.x0sigma[None], controller.K[None],
                             controller.k[None], controller.pol_covar[None])
    return mu[0], sigma[0]
