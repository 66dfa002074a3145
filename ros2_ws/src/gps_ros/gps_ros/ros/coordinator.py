"""The coordinator's pure part: the same GPS loop class (:mod:`gps_ros.algorithm`) over proxy
stages, the wait for the samplers and the training run with its resume and its one-line failures.
``coordinator_node`` creates the rclpy transports and calls :func:`build_ros_algorithm` and
:func:`run_training`; the tests call them with in-process transports."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from gps_ros.algorithm import LQRFLM, MDGPS, build_trajectory_optimizer
from gps_ros.mbrl import MODEL_BASED
from gps_ros.task import build_cost, build_initial_controllers, loop_kwargs
from gps_ros.train import build_policy_prior, build_policy_search

from . import convert
from .proxies import (PolicyRef, RosDynamicsFitter, RosPolicyStage, RosSampler,
                      RosTrajectoryOptimizer)


def sampler_names(num_samplers: int, prefix: str = "sampler_", action: str = "run_trial") -> list:
    """Action names of N namespaced samplers: ``/sampler_0/run_trial`` ... (as train.launch.py)."""
    if num_samplers < 1:
        raise ValueError(f"num_samplers must be >= 1, got {num_samplers}")
    return [f"/{prefix}{i}/{action}" for i in range(num_samplers)]


def joint_indices(layout) -> np.ndarray:
    return layout.joint_state_indices


def build_ros_algorithm(cfg, model, run_trial: Sequence[Callable], fit_dynamics: Callable,
                        optimize: Callable, train_policy: Optional[Callable] = None,
                        checkpoint_dir: str = "", types=convert.PlainTypes, srv_types=None,
                        load_export: Optional[Callable] = None) -> LQRFLM:
    """LQR-FLM, MDGPS or BADMM (by ``cfg.algorithm.type``) with every stage a proxy; or a
    model-based learner (mbpo, dyna, bptt: :mod:`gps_ros.mbrl`) whose trials run on the samplers
    (its policy exported to ``checkpoint_dir`` for them, :func:`model_based_exporter`) while its
    model and updates run here.

    Args:
        cfg: the experiment config.

        model: the :class:`gps_ros.task.TaskModel` the cost and initial controllers are built
            from (the robot model of the robot_description, no simulator).

        run_trial: one RunTrial transport per sampler.
        fit_dynamics, optimize: service transports.
        train_policy: TrainPolicy transport (MDGPS only).
    """
    if cfg.algorithm.type in MODEL_BASED:
        from gps_ros.mbrl import build_model_based

        if not checkpoint_dir:
            raise ValueError(f"{cfg.algorithm.type} needs a checkpoint_dir for the policy exports "
                             "the samplers load")
        sampler = RosSampler(run_trial, types, export_policy=model_based_exporter(checkpoint_dir))
        sampler.layout = model.layout
        return build_model_based(cfg, sampler, model)
    sampler = RosSampler(run_trial, types, record_images=cfg.algorithm.type == "mdgps"
                         and cfg.policy is not None and cfg.policy.use_image)
    sampler.layout = model.layout
    fitter = RosDynamicsFitter(fit_dynamics, types, srv_types)
    # algorithm.traj_opt: lqr and pilqr's LQR part run on the trajopt node, PI² (and pilqr's PI²
    # part, which needs the samples) here
    optimizer = build_trajectory_optimizer(cfg.algorithm,
                                           RosTrajectoryOptimizer(optimize, types, srv_types))
    cost = build_cost(cfg, model)
    controllers = build_initial_controllers(cfg, model, cost)
    args = (cfg.algorithm, sampler, fitter, cost, controllers, cfg.seed)
    kwargs = dict(loop_kwargs(cfg, model), optimizer=optimizer)
    if cfg.algorithm.type == "lqr_flm":
        return LQRFLM(*args, **kwargs)
    if train_policy is None:
        raise ValueError("MDGPS needs a train_policy transport (trainer_node)")
    policy = RosPolicyStage(train_policy, joint_indices(model.layout), checkpoint_dir, types,
                            srv_types, load_export=load_export,
                            needs_image=bool(cfg.policy.use_image))
    return build_policy_search(cfg, args, kwargs, policy, build_policy_prior(cfg))


def model_based_exporter(checkpoint_dir: str) -> Callable:
    """``export_policy`` of a model-based learner's RosSampler: its SAC actor as TorchScript
    (``checkpoint_dir/actor_UUUUUUUU.pt``, U the policy updates so far: written once per policy
    and reused by every condition's trials) for the samplers, which feed it the full GPS state and
    the trial's noise (:class:`gps_ros.ros.trial.TorchScriptPolicyActor`)."""
    from gps_ros.mbrl.sac import export_actor

    def export(actor) -> PolicyRef:
        sac = actor.sac
        path = Path(checkpoint_dir) / f"actor_{sac.updates:08d}.pt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            export_actor(sac.actor, path, state_indices=range(sac.dX))
        return PolicyRef(str(path), None, needs_image=False)

    return export


def remote_optimizer(optimizer) -> Optional[RosTrajectoryOptimizer]:
    """The :class:`RosTrajectoryOptimizer` the C-step calls: the optimizer itself (lqr), PILQR's
    LQR part, or None (PI² calls no node)."""
    for opt in (optimizer, getattr(optimizer, "lqr", None)):
        if isinstance(opt, RosTrajectoryOptimizer):
            return opt
    return None


def reattach(algo: LQRFLM, run_trial, fit_dynamics, optimize, train_policy=None,
             types=convert.PlainTypes, srv_types=None) -> None:
    """After restoring a checkpoint (proxies are pickled without transports and message classes),
    plug them back in.  (A model-based learner restores its model and policy only: the
    sampler it was built with keeps its transports.)"""
    if is_model_based(algo):
        return
    algo.sampler.run_trial = list(run_trial)
    algo.fitter.call = fit_dynamics
    remote = remote_optimizer(algo.optimizer)
    stages = [algo.sampler, algo.fitter]
    if remote is not None:                 # pi2 calls no node
        remote.call = optimize
        stages.append(remote)
    if isinstance(algo, MDGPS):
        stages.append(algo.policy)
        if train_policy is not None:
            algo.policy._train = train_policy
    for st in stages:
        if hasattr(st, "types"):
            st.types = types
        if srv_types is not None and hasattr(st, "srv"):
            st.srv = srv_types


def is_model_based(algo) -> bool:
    """Whether ``algo`` is a :class:`gps_ros.mbrl.learner.ModelBasedLearner` (without importing
    torch for a GPS run: a learner exists only where its module was loaded)."""
    learner = sys.modules.get("gps_ros.mbrl.learner")
    return learner is not None and isinstance(algo, learner.ModelBasedLearner)


def required_samplers(min_samplers: int, n: int) -> int:
    """How many of the ``n`` samplers named must answer before training starts (0: all)."""
    need = int(min_samplers) or n
    if not 1 <= need <= n:
        raise ValueError(f"min_samplers {min_samplers} must be between 1 and the {n} samplers named")
    return need


def wait_for_samplers(transports, need: int, timeout: float, poll: float = 0.1,
                      check: Optional[Callable[[], None]] = None) -> list:
    """Names of the samplers up (``transport.ready()``) once ``need`` of them are, or when
    ``timeout`` s have passed; ``check()`` between polls may raise to stop waiting (a signal)."""
    deadline = time.monotonic() + timeout
    while True:
        up = [t.name for t in transports if t.ready()]
        if len(up) >= need or time.monotonic() >= deadline:
            return up
        time.sleep(poll)
        if check is not None:
            check()


def samplers_missing_error(up: Sequence[str], need: int, timeout: float,
                           missing: Sequence[str]) -> str:
    """The one-line reason the coordinator cannot start with ``up`` samplers."""
    return (f"only {len(up)} of the {need} samplers needed answered within {timeout:g} s "
            f"(missing: {', '.join(missing)}); check that their hosts run train.launch.py "
            "role:=samplers with the same ROS_DOMAIN_ID and DDS peers, or lower min_samplers")


def iteration_line(m: dict, iterations: int) -> str:
    """The coordinator's log line of one iteration's metrics."""
    return (f"iteration {m['iteration']}/{iterations}: cost {m['cost']:.3f}, final distance cm "
            f"{[round(100 * d, 1) for d in m['final_distance']]}, "
            + (f"inserted {[round(v, 2) for v in m['inserted']]}, " if "inserted" in m else "")
            + f"discarded {m['discarded']}, {m['time']['total']:.2f} s")


def run_training(cfg, out: Path, build: Callable[[], LQRFLM],
                 reattach_stages: Callable[[LQRFLM], None], log, iterations: int = 0,
                 before_condition: Optional[Callable] = None, sampler_wait: float = 30.0,
                 on_result: Optional[Callable] = None) -> int:
    """The GPS loop of the coordinator into the experiment directory ``out``; the exit code
    (0 done, 1 failed with the reason in one ``log.error`` line and how to resume in another).

    ``build()`` makes the algorithm over the proxy stages; an existing experiment in ``out`` is
    resumed (its last checkpoint restored, ``reattach_stages(algo)`` plugs the transports back
    in).  ``iterations`` > 0 sets the target (kept in the experiment's config).  ``log`` has
    ``info`` / ``warning`` / ``error`` (an rclpy or a :mod:`logging` logger).  Ctrl-C is logged
    with the resume command and raised on.  ``on_result(algo, result)`` after each iteration (the
    live view)."""
    from gps_ros.experiment import Experiment, ExperimentError
    from gps_ros.ros import proxies
    from gps_ros.train import create_experiment, restore_experiment, run

    def restored(algo):
        reattach_stages(algo)
        log.info(f"resuming {out} after iteration {algo.iteration} (the dynamics prior restarts "
                 "in dynamics_node unless it kept running)")

    out = Path(out).resolve()
    try:
        algo = build()
        if (out / "config.yaml").exists():
            exp = Experiment.open(out)
            restore_experiment(exp, algo, cfg, iterations, on_restored=restored)
        else:
            exp = create_experiment(out, cfg, iterations)
        if before_condition is not None:
            algo.sampler.before_condition = before_condition
        algo.sampler.logger = log
        algo.sampler.sampler_wait = float(sampler_wait)
        target = exp.cfg.iterations
        if algo.iteration >= target:
            log.info(f"{out} already has {algo.iteration} of {target} iterations")
        run(exp, algo, target, progress=False,
            on_iteration=lambda m: log.info(iteration_line(m, target)),
            resume_hint=f"relaunch with experiment_dir:={out}", on_result=on_result)
        log.info(f"training done: {target} iterations, results in {out}")
        return 0
    except KeyboardInterrupt:
        log.warning(f"training interrupted: completed iterations are in {out}; relaunch with "
                    f"experiment_dir:={out} to resume")
        raise
    except (proxies.RobotNotResponding, proxies.RemoteStageError, ExperimentError,
            RuntimeError, TimeoutError, ValueError) as err:
        log.error(f"training failed: {err}")
        log.error(f"the experiment in {out} keeps every completed iteration; relaunch with "
                  f"experiment_dir:={out} to resume")
        return 1
