"""Model-based learners beside GPS on the same robot interface: MBPO, Dyna and backpropagation
through a learned model (:mod:`gps_ros.mbrl.learner`), with their probabilistic ensemble
(:mod:`gps_ros.mbrl.ensemble`), SAC (:mod:`gps_ros.mbrl.sac`) and Markov reward
(:mod:`gps_ros.mbrl.reward`).  Needs torch."""
from __future__ import annotations

import numpy as np

#: the ``algorithm.type`` values this package implements
MODEL_BASED = ("mbpo", "dyna", "bptt")


def state_box(task):
    """The :class:`~gps_ros.mbrl.learner.StateBox` of a :class:`~gps_ros.task.TaskModel`: joint
    positions within the URDF limits, joint speeds within the sampler's blow-up speed."""
    from ..agents.sim import MAX_JOINT_VELOCITY
    from .learner import StateBox

    lay = task.layout
    low, high = np.full(task.dX, -np.inf), np.full(task.dX, np.inf)
    low[lay.joint_pos], high[lay.joint_pos] = task.robot.lower, task.robot.upper
    low[lay.joint_vel], high[lay.joint_vel] = -MAX_JOINT_VELOCITY, MAX_JOINT_VELOCITY
    return StateBox(low, high)


def action_range(task, cfg, start_pose=None):
    """(low, high) (n,) of the model-based policies' actions on ``task`` for the ``model_based``
    section ``cfg``.  A random initial policy explores the whole range, so it must be safe to
    explore: in effort mode each joint's torque range is ``max(action_accel · M_jj,
    action_speed · d_j)`` (M the inertia at ``start_pose``, default the task's first start pose;
    d the joint damping) within the torque limits; full torque spins a light wrist past the
    sampler's 10 rad/s blow-up speed within a step.  Velocity commands within ``action_speed``;
    position commands within the joint limits (the sampler's safety filter limits their rate)."""
    low, high = task.command_bounds()
    if task.command == "position":
        return low, high
    if task.command == "velocity":
        lim = np.minimum(high, cfg.action_speed)
        return -lim, lim
    q0 = task.start_pose(0) if start_pose is None else start_pose
    torque = np.maximum(cfg.action_accel * np.diag(task.mass_matrix(q0)),
                        cfg.action_speed * np.broadcast_to(task.joint_damping, (task.n,)))
    lim = np.minimum(high, torque)
    return -lim, lim


def build_model_based(cfg, sampler, task, cost=None):
    """The learner of ``cfg.algorithm.type`` (mbpo, dyna, bptt) over ``sampler`` for the task
    model ``task`` (in-process: the SimAgent's; over ROS: the robot_description's)."""
    from ..task import build_cost, loop_kwargs
    from .learner import ModelBasedLearner

    kw = loop_kwargs(cfg, task)
    return ModelBasedLearner(cfg.model_based, cfg.algorithm.type, sampler,
                             cost if cost is not None else build_cost(cfg, task),
                             task.num_conditions, cfg.agent.T, task.dX, task.dU,
                             action_range(task, cfg.model_based), state_box(task), cfg.seed,
                             samples_per_condition=cfg.algorithm.samples_per_condition,
                             distance_fn=kw["distance_fn"], task_metrics=kw["task_metrics"])
