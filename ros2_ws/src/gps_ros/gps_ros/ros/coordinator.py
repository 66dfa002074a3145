"""The coordinator's pure part: the same GPS loop class (:mod:`gps_ros.algorithm`) over proxy
stages.  ``coordinator_node`` creates the rclpy transports and calls :func:`build_ros_algorithm`;
the tests call it with in-process transports."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from gps_ros.algorithm import LQRFLM, MDGPS, build_trajectory_optimizer
from gps_ros.task import build_cost, build_initial_controllers, loop_kwargs
from gps_ros.train import build_policy_prior, build_policy_search

from . import convert
from .proxies import (RosDynamicsFitter, RosPolicyStage, RosSampler, RosTrajectoryOptimizer)


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
    """LQR-FLM or MDGPS (by ``cfg.algorithm.type``) with every stage a proxy.

    Args:
        cfg: the experiment config.
        model: the :class:`gps_ros.task.TaskModel` the cost and initial controllers are built
            from (the robot model of the robot_description, no simulator).
        run_trial: one RunTrial transport per sampler.
        fit_dynamics, optimize: service transports.
        train_policy: TrainPolicy transport (MDGPS only).
    """
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
    plug them back in."""
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
