"""Proxy stages: the GPS loop's stage Protocols implemented by calling ROS actions / services, and
the server-side handlers those nodes run.  No rclpy here.

The proxies talk to a *transport*, one callable per remote endpoint, that takes a request / goal
message and returns the response / result message (blocking).  On ROS the transports are thin
wrappers of rclpy clients (:mod:`gps_ros.ros.clients`); in the tests they call the handlers below
directly, so the proxy + handler pair is checked against the in-process stages without ROS.

* :class:`RosSampler` (``Sampler``): one RunTrial goal per trial, spread over N namespaced samplers
  concurrently (each sampler runs one trial at a time, taking the next queued trial when free);
  the results are reassembled in trial order.
* :class:`RosDynamicsFitter` (``DynamicsFitter``) -> ``fit_dynamics`` service.
* :class:`RosTrajectoryOptimizer` (``TrajectoryOptimizer``) -> ``optimize_trajectories`` service.
* :class:`RosPolicyStage` (``PolicyStage``) -> ``train_policy`` action; predicts locally with the
  TorchScript export the trainer wrote; its actor is a :class:`PolicyRef` (export path + noise).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from . import convert, validate
from .common import check_stop
from .trial import NO_RESPONSE

log = logging.getLogger(__name__)


# --- plain request / response stand-ins -----------------------------------------------------------
def _fit_request():
    return SimpleNamespace(trajectories=[], num_conditions=0)


def _fit_response():
    return SimpleNamespace(success=False, message="", dynamics=[])


def _optimize_request():
    return SimpleNamespace(dynamics=[], costs=[], previous=[], epsilon=[], eta0=[])


def _optimize_response():
    return SimpleNamespace(success=False, message="", results=[])


def _train_goal():
    return SimpleNamespace(trajectories=[], controllers=[], iteration=0, checkpoint_dir="")


def _train_result():
    return SimpleNamespace(success=False, message="", checkpoint_path="", export_path="",
                           loss_start=0.0, loss_end=0.0, du=0, policy_covariance=[])


def plain_service_types() -> SimpleNamespace:
    """Factories with the field names of the gps_msgs services / actions (for tests, no ROS);
    module-level functions so that proxies holding them can be pickled into checkpoints."""
    return SimpleNamespace(FitDynamicsRequest=_fit_request, FitDynamicsResponse=_fit_response,
                           OptimizeRequest=_optimize_request, OptimizeResponse=_optimize_response,
                           TrainGoal=_train_goal, TrainResult=_train_result)


def ros_service_types() -> SimpleNamespace:
    """The generated request / response classes (ROS machines only)."""
    from gps_msgs.action import TrainPolicy
    from gps_msgs.srv import FitDynamics, OptimizeTrajectories

    return SimpleNamespace(
        FitDynamicsRequest=FitDynamics.Request, FitDynamicsResponse=FitDynamics.Response,
        OptimizeRequest=OptimizeTrajectories.Request, OptimizeResponse=OptimizeTrajectories.Response,
        TrainGoal=TrainPolicy.Goal, TrainResult=TrainPolicy.Result)


class RemoteStageError(RuntimeError):
    """A remote stage answered with success = false (its message says why)."""


class RobotNotResponding(RuntimeError):
    """A sampler's robot did not move although commands were sent (see
    :func:`gps_ros.ros.trial.check_response`): the run must stop, not fit an unmoving arm."""


# --- checkpoints -----------------------------------------------------------------------------------
_TRANSIENT = ("call", "_train", "_module", "_load_export")


def _portable_getstate(self) -> dict:
    """A proxy as pickled into ``state.pkl``: no transport, and no generated message classes
    (``convert.ros_types()``), so that a ROS-trained run's state loads where ROS is absent
    (``gps-ros export`` / ``eval`` on a laptop); :func:`gps_ros.ros.coordinator.reattach` plugs
    both back in when the coordinator resumes."""
    s = dict(self.__dict__)
    for k in _TRANSIENT:
        if k in s:
            s[k] = None
    if "types" in s:
        s["types"] = None
    if "srv" in s:
        s["srv"] = None
    return s


def _portable_setstate(self, state: dict) -> None:
    self.__dict__.update(state)
    if "types" in state and state["types"] is None:
        self.types = convert.PlainTypes
    if "srv" in state and state["srv"] is None:
        self.srv = plain_service_types()


# --- distributing trials --------------------------------------------------------------------------
@dataclass
class TrialJob:
    index: int          # position of the trial in the returned Trajectories
    goal: object        # the RunTrial goal


def round_robin(n_jobs: int, n_workers: int) -> List[List[int]]:
    """Static assignment of job indices to workers (job i -> worker i mod n)."""
    if n_workers < 1:
        raise ValueError("need at least one sampler")
    return [list(range(w, n_jobs, n_workers)) for w in range(n_workers)]


def dispatch(jobs: Sequence[TrialJob], workers: Sequence[Callable], timeout: Optional[float] = None) -> list:
    """Run every job on some worker, each worker one job at a time, all workers concurrently.

    A worker takes the next queued job when it is free (so a slow robot does not hold up the
    others).  A worker that raised (its robot failed, its host went away) takes no more jobs in
    this batch, and its job goes back to the queue for the others: each job is tried on up to
    every worker once; if none can run it, the whole batch fails with the errors.  The trial a
    goal describes (condition, controller, noise) does not depend on the worker.  Returns the
    results in job order.
    """
    if not workers:
        raise ValueError("no samplers to dispatch trials to")
    results: Dict[int, object] = {}
    failures: Dict[int, List[str]] = {}
    todo: "queue.Queue[TrialJob]" = queue.Queue()
    for j in jobs:
        todo.put(j)
    lock = threading.Lock()
    dead = set()
    pending = [len(jobs)]         # jobs neither done nor given up: a failed one may come back

    def work(w: int):
        fn = workers[w]
        while True:
            try:
                job = todo.get(timeout=0.05)
            except queue.Empty:
                with lock:
                    if pending[0] == 0 or w in dead:
                        return
                continue         # a job still running elsewhere may fail and be queued again
            try:
                res = fn(job.goal)
            except Exception as err:  # noqa: BLE001 - reported with the job
                with lock:
                    errs = failures.setdefault(job.index, [])
                    errs.append(f"sampler {w}: {err}")
                    dead.add(w)
                    retry = len(errs) < len(workers) and len(dead) < len(workers)
                    if not retry:
                        pending[0] -= 1
                if retry:
                    todo.put(job)
                with lock:
                    others = len(dead) < len(workers)
                if not others:
                    _give_up_queued()
                return  # a failed sampler takes no more jobs in this batch
            with lock:
                results[job.index] = res
                pending[0] -= 1

    def _give_up_queued():
        """Every sampler failed: nobody will take the queued jobs."""
        while True:
            try:
                todo.get_nowait()
            except queue.Empty:
                return
            with lock:
                pending[0] -= 1

    if len(workers) == 1:
        work(0)
    else:
        threads = [threading.Thread(target=work, args=(w,), daemon=True, name=f"sampler-{w}")
                   for w in range(len(workers))]
        for t in threads:
            t.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in threads:
            while t.is_alive() and (deadline is None or time.monotonic() < deadline):
                t.join(0.1)
                check_stop()               # Ctrl-C of a coordinator waiting for its samplers
    missing = [j.index for j in jobs if j.index not in results]
    if missing:
        detail = "; ".join(f"trial {i}: {', '.join(failures.get(i, ['not run']))}" for i in missing)
        raise RuntimeError(f"{len(missing)} of {len(jobs)} trials could not be run: {detail}")
    return [results[j.index] for j in jobs]


@dataclass
class PolicyRef:
    """The global policy as a sampler runs it: a TorchScript export and its noise factor."""

    export_path: str
    chol: Optional[np.ndarray] = None
    needs_image: bool = True


class RosSampler:
    """``Sampler`` over N RunTrial endpoints (e.g. ``/sampler_0/run_trial`` ... ``/sampler_{N-1}``).

    Args:
        run_trial: one blocking callable per sampler, goal -> Trajectory result message.
        types: message classes (:data:`convert.PlainTypes` or :func:`convert.ros_types`).

        export_policy: turns an in-memory policy actor into a :class:`PolicyRef` (writes the
            TorchScript export the samplers load); not needed when the actor already is one.

        record_images: ask the samplers for camera frames (the visuomotor policy needs them).
    """

    def __init__(self, run_trial: Sequence[Callable], types=convert.PlainTypes,
                 export_policy: Optional[Callable] = None, record_images: bool = False,
                 image_key: str = "image") -> None:
        self.run_trial = list(run_trial)
        self.types = types
        self.export_policy = export_policy
        self.record_images = record_images
        self.image_key = image_key
        #: called with the condition before its trials (e.g. the operator prepares its set-up)
        self.before_condition: Optional[Callable[[int], None]] = None
        #: seconds to wait for a sampler to be up when none is
        self.sampler_wait = 30.0
        self.logger = None         # where sampler changes are reported (default: logging)
        self._live: Optional[tuple] = None

    @property
    def num_samplers(self) -> int:
        return len(self.run_trial)

    def goals(self, policy, condition: int, noise: np.ndarray, seeds: Optional[List[int]],
              source: str) -> List[TrialJob]:
        n, T, _ = noise.shape
        ref = None
        if source == "policy":
            ref = policy if isinstance(policy, PolicyRef) else None
            if ref is None:
                if self.export_policy is None:
                    raise ValueError("RosSampler needs export_policy to sample an in-memory policy")
                ref = self.export_policy(policy)
        jobs = []
        for i in range(n):
            seed = int(seeds[i]) if seeds is not None else i
            goal = self.types.RunTrialGoal()
            if ref is None:
                convert.run_trial_goal(goal, condition, T, noise[i], seed, controller=policy,
                                       record_images=self.record_images)
            else:
                convert.run_trial_goal(goal, condition, T, noise[i], seed,
                                       policy_checkpoint=ref.export_path, policy_chol=ref.chol,
                                       record_images=self.record_images or ref.needs_image)
            jobs.append(TrialJob(i, goal))
        return jobs

    def sample(self, policy, condition: int, noise: Optional[np.ndarray] = None,
               seeds: Optional[List[int]] = None, source: str = "controller"):
        if noise is None:
            T = policy.T if hasattr(policy, "T") else None
            if T is None:
                raise ValueError("RosSampler.sample needs noise (n, T, dU) for a policy")
            noise = np.zeros((1, T, policy.dU))
        noise = np.asarray(noise, dtype=np.float64)
        if noise.ndim != 3:
            raise ValueError(f"noise must be (n, T, dU), got {noise.shape}")
        if seeds is not None and len(seeds) != noise.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for {noise.shape[0]} trials")
        jobs = self.goals(policy, condition, noise, seeds, source)
        if getattr(self, "before_condition", None) is not None:
            self.before_condition(condition)
        msgs = dispatch(jobs, self.live_samplers())
        tr = convert.msgs_to_trajectories(msgs, self.image_key, require_images=self.record_images)
        for m in tr.meta:   # the samplers record their own source name; keep the loop's
            m.source = source
        dead = [m.reason for m in tr.meta if m.discarded and m.reason.startswith(NO_RESPONSE)]
        if dead:
            raise RobotNotResponding(f"condition {condition}: {dead[0]}; training stopped (no "
                                     "trial of a robot that does not move is worth fitting)")
        return tr


    def live_samplers(self) -> list:
        """The samplers that are up now (late ones join, lost ones leave; changes are logged);
        waits up to ``sampler_wait`` seconds while none is."""
        wait = float(getattr(self, "sampler_wait", 30.0))
        deadline = time.monotonic() + wait
        while True:
            live = tuple(i for i, w in enumerate(self.run_trial)
                         if getattr(w, "ready", lambda: True)())
            if live or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
            check_stop()
        prev = getattr(self, "_live", None)
        if live != prev:
            say = getattr(self, "logger", None) or log          # the coordinator's node logger
            names = [getattr(w, "name", f"sampler {i}") for i, w in enumerate(self.run_trial)]
            if prev is not None:
                for i in sorted(set(live) - set(prev)):
                    say.warning(f"sampler {names[i]} joined")
                for i in sorted(set(prev) - set(live)):
                    say.warning(f"sampler {names[i]} is gone: its trials go to the others")
            say.info(f"trials on {len(live)} of {len(names)} samplers: "
                     f"{', '.join(names[i] for i in live) or '-'}")
            self._live = live
        if not live:
            raise RuntimeError(f"no sampler is up (waited {wait:g} s for one of "
                               f"{len(self.run_trial)})")
        return [self.run_trial[i] for i in live]


# --- dynamics and trajectory optimisation ---------------------------------------------------------
class RosDynamicsFitter:
    """``DynamicsFitter`` calling ``fit_dynamics`` (the prior lives in the dynamics_node)."""

    def __init__(self, call: Callable, types=convert.PlainTypes, srv_types=None) -> None:
        self.call = call
        self.types = types
        self.srv = srv_types or plain_service_types()

    def fit(self, trajs: Sequence) -> list:
        req = self.srv.FitDynamicsRequest()
        msgs = []
        for c, tr in enumerate(trajs):          # trials carry their condition index in the batch
            for m in convert.trajectories_to_msgs(tr, self.types, image_key=None):  # no frames
                m.condition = c
                msgs.append(m)
        req.trajectories = msgs
        req.num_conditions = len(trajs)
        res = self.call(req)
        if not res.success:
            raise RemoteStageError(f"fit_dynamics failed: {res.message}")
        if len(res.dynamics) != len(trajs):
            raise RemoteStageError(f"fit_dynamics returned {len(res.dynamics)} models for "
                                   f"{len(trajs)} conditions")
        return [convert.dynamics_from_msg(d) for d in res.dynamics]

    __getstate__ = _portable_getstate    # the prior state is in the node
    __setstate__ = _portable_setstate


class RosTrajectoryOptimizer:
    """``TrajectoryOptimizer`` calling ``optimize_trajectories``."""

    def __init__(self, call: Callable, types=convert.PlainTypes, srv_types=None) -> None:
        self.call = call
        self.types = types
        self.srv = srv_types or plain_service_types()

    def optimize(self, dynamics, costs, prev, epsilon, eta0, samples=None, sample_costs=None):
        """The LQR on the trajopt node; ``samples`` / ``sample_costs`` (for the sample-based
        optimisers) are not sent."""
        t = self.types
        req = self.srv.OptimizeRequest()
        req.dynamics = [convert.dynamics_to_msg(d, t.LinearGaussianDynamics()) for d in dynamics]
        req.costs = [convert.cost_to_msg(c, t.QuadraticCost()) for c in costs]
        req.previous = [convert.controller_to_msg(c, t.LinearGaussianController()) for c in prev]
        req.epsilon = [float(e) for e in epsilon]
        req.eta0 = [float(e) for e in eta0]
        res = self.call(req)
        if not res.success:
            raise RemoteStageError(f"optimize_trajectories failed: {res.message}")
        return [convert.lqr_result_from_msg(r) for r in res.results]


# --- the global policy ----------------------------------------------------------------------------
class RosPolicyStage:
    """``PolicyStage`` whose S-step runs in the trainer_node (``train_policy`` action).

    Args:
        train: blocking callable, TrainPolicy goal -> result message.
        joint_idx: state indices of the joint positions / velocities the network sees.
        checkpoint_dir: where the trainer writes (must be shared with the samplers).

        load_export: path -> module(images uint8 (B, H, W, 3), joints float32 (B, dq)) -> (B, dU),
            for local prediction (default: TorchScript via :func:`gps_ros.policy.export.load_torchscript`).
    """

    def __init__(self, train: Callable, joint_idx, checkpoint_dir: str, types=convert.PlainTypes,
                 srv_types=None, load_export: Optional[Callable] = None, image_key: str = "image",
                 needs_image: bool = True) -> None:
        self._train = train
        self.joint_idx = np.asarray(joint_idx)
        self.checkpoint_dir = str(checkpoint_dir)
        self.types = types
        self.srv = srv_types or plain_service_types()
        self._load_export = load_export
        self.image_key = image_key
        self.needs_image = needs_image
        self.trained = False
        self.iteration = 0
        self.export_path = ""
        self.pol_covar: Optional[np.ndarray] = None
        self._module = None

    def train(self, trajs, controllers) -> Dict:
        t = self.types
        goal = self.srv.TrainGoal()
        msgs = []
        for c, tr in enumerate(trajs):
            for m in convert.trajectories_to_msgs(tr, t, self.image_key):
                m.condition = c
                msgs.append(m)
        goal.trajectories = msgs
        goal.controllers = [convert.controller_to_msg(c, t.LinearGaussianController())
                            for c in controllers]
        self.iteration += 1
        goal.iteration = self.iteration
        goal.checkpoint_dir = self.checkpoint_dir
        res = self._train(goal)
        if not res.success:
            raise RemoteStageError(f"train_policy failed: {res.message}")
        du = int(res.du)
        self.pol_covar = convert.unpack(res.policy_covariance, (du, du), "TrainPolicy.Result.policy_covariance")
        self.export_path = str(res.export_path)
        self._module = self._load(self.export_path)
        self.trained = True
        return {"loss_start": float(res.loss_start), "loss_end": float(res.loss_end),
                "checkpoint": str(res.checkpoint_path)}

    def _load(self, path: str):
        if self._load_export is not None:
            return self._load_export(path)
        from gps_ros.policy.export import load_torchscript

        return load_torchscript(path)[0]

    def _inputs(self, tr):
        import torch

        N, T = tr.N, tr.T
        q = torch.as_tensor(tr.X[..., self.joint_idx].reshape(N * T, -1), dtype=torch.float32)
        if self.needs_image and self.image_key in tr.obs:
            img = torch.as_tensor(tr.obs[self.image_key].reshape(N * T, *tr.obs[self.image_key].shape[2:]))
        else:
            img = torch.zeros(N * T, 1, 1, 3, dtype=torch.uint8)
        return img, q

    def predict(self, tr) -> np.ndarray:
        import torch

        img, q = self._inputs(tr)
        with torch.no_grad():
            u = self._module(img, q).double().numpy()
        return u.reshape(tr.N, tr.T, -1)

    def state_jacobian(self, tr, dX: int) -> np.ndarray:
        """∂μ_θ/∂x (N, T, dU, dX) through the export's joint inputs, the frames held fixed (as
        :meth:`gps_ros.policy.global_policy.GlobalPolicy.state_jacobian`), for
        ``policy.linearization: jacobian``."""
        from gps_ros.policy.distill import joint_jacobian
        from gps_ros.policy.global_policy import state_jacobian

        img, q = self._inputs(tr)
        return state_jacobian(joint_jacobian(self._module, img, q), self.joint_idx, tr.N, tr.T, dX)

    def covariance(self) -> np.ndarray:
        return self.pol_covar

    def actor(self) -> PolicyRef:
        return PolicyRef(self.export_path, np.linalg.cholesky(self.pol_covar), self.needs_image)

    __getstate__ = _portable_getstate
    __setstate__ = _portable_setstate


# --- server-side handlers (used by the nodes; pure) -----------------------------------------------
def _refused(stage: str, err: Exception) -> str:
    """The one line of a failed request: a refusal (:class:`validate.Refused`) or a bad message
    as it is, anything else with its traceback in the log (a bug)."""
    if isinstance(err, (validate.Refused, convert.ShapeError)):
        log.error("%s refused: %s", stage, err)
    else:
        log.exception("%s failed", stage)
    return f"{type(err).__name__}: {err}"


def handle_fit_dynamics(fitter, request, response, types=convert.PlainTypes,
                        horizon: Optional[int] = None, num_conditions: Optional[int] = None):
    """fit_dynamics: trials of all conditions -> one LinearGaussianDynamics per condition.  With
    the task's ``horizon`` and ``num_conditions``, the request is checked against them first
    (:func:`validate.check_trials`)."""
    try:
        if horizon is not None:
            validate.check_fit_request(request, horizon, num_conditions)
        trajs = convert.split_by_condition(request.trajectories, int(request.num_conditions))
        dyn = fitter.fit(trajs)
        response.dynamics = [convert.dynamics_to_msg(d, types.LinearGaussianDynamics()) for d in dyn]
        response.success, response.message = True, f"fitted {len(dyn)} conditions"
    except Exception as err:  # noqa: BLE001 - reported to the caller
        response.success, response.message, response.dynamics = False, _refused("fit_dynamics", err), []
    return response


def handle_optimize(optimizer, request, response, types=convert.PlainTypes,
                    horizon: Optional[int] = None):
    """optimize_trajectories: the batched KL-constrained LQR.  With the task's ``horizon``, the
    inputs are checked first (:func:`validate.check_optimize_request`)."""
    try:
        M = len(request.dynamics)
        if not (len(request.costs) == len(request.previous) == len(request.epsilon)
                == len(request.eta0) == M):
            raise convert.ShapeError(
                f"request lists disagree: {M} dynamics, {len(request.costs)} costs, "
                f"{len(request.previous)} previous, {len(request.epsilon)} epsilon, "
                f"{len(request.eta0)} eta0")
        dyn = [convert.dynamics_from_msg(d) for d in request.dynamics]
        costs = [convert.cost_from_msg(c) for c in request.costs]
        prev = [convert.controller_from_msg(c) for c in request.previous]
        if horizon is not None:
            validate.check_optimize_request(dyn, costs, prev, request.epsilon, request.eta0, horizon)
        res = optimizer.optimize(dyn, costs, prev, list(request.epsilon), list(request.eta0))
        response.results = [convert.lqr_result_to_msg(r, types.LQRSolution()) for r in res]
        response.success, response.message = True, f"optimised {len(res)} conditions"
    except Exception as err:  # noqa: BLE001
        response.success, response.message, response.results = (
            False, _refused("optimize_trajectories", err), [])
    return response


def handle_train_policy(policy, goal, result, export: Callable[[object, str, int], tuple],
                        feedback: Optional[Callable[[int, int, float], None]] = None,
                        horizon: Optional[int] = None, num_conditions: Optional[int] = None):
    """train_policy: distil on the goal's trials (a :class:`gps_ros.policy.GlobalPolicy`), then
    ``export(policy, checkpoint_dir, iteration) -> (checkpoint_path, export_path)``.  With the
    task's ``horizon`` and ``num_conditions``, the trials and controllers are checked first."""
    try:
        if horizon is not None:
            validate.check_train_goal(goal, horizon, num_conditions)
        M = len(goal.controllers)
        trajs = convert.split_by_condition(goal.trajectories, M)
        ctrls = [convert.controller_from_msg(c) for c in goal.controllers]
        out = policy.train(trajs, ctrls)
        ckpt, exp_path = export(policy, str(goal.checkpoint_dir), int(goal.iteration))
        cov = np.asarray(policy.covariance())
        result.success, result.message = True, f"trained on {sum(t.N for t in trajs)} trials"
        result.checkpoint_path, result.export_path = str(ckpt), str(exp_path)
        result.loss_start = float(out.get("loss_start", float("nan")))
        result.loss_end = float(out.get("loss_end", float("nan")))
        result.du = int(cov.shape[0])
        result.policy_covariance = convert.pack(cov)
        if feedback is not None:
            feedback(1, 1, result.loss_end)
    except Exception as err:  # noqa: BLE001
        if type(err).__name__ == "TrainingStopped":        # shutdown, not a bug: one line
            log.warning("train_policy: %s", err)
            result.success, result.message = False, f"{type(err).__name__}: {err}"
        else:
            result.success, result.message = False, _refused("train_policy", err)
    return result
