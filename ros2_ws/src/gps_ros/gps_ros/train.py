"""In-process training: config -> PyBullet agent + GPS loop -> experiment directory.

``train(cfg, out)`` starts a run, ``resume(out)`` continues one from its last complete iteration.
Both are what ``gps-ros train`` calls; ML users can call them directly.  The number of iterations
asked for is the run's target, recorded in its config.yaml: a resumed run finishes it.
"""
from __future__ import annotations

import datetime as _dt
import errno
import logging
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .algorithm import BADMM, LQRFLM, MDGPS, build_trajectory_optimizer
from .config import ConfigError, ExperimentConfig
from .dynamics import DynamicsFitter
from .experiment import Experiment, ExperimentError
from .mbrl import MODEL_BASED
from .tb import metrics_scalars
from .task import build_cost, build_initial_controllers, loop_kwargs

log = logging.getLogger(__name__)


def build_fitter(cfg: ExperimentConfig, task=None, urdf: Optional[str] = None) -> DynamicsFitter:
    """The dynamics fitter of ``cfg.dynamics``.  ``model_prior`` models the robot of
    ``cfg.agent`` (its :class:`~gps_ros.task.TaskModel` ``task`` where one is built already):
    on ``dynamics.model_urdf`` if set, else on ``urdf`` (URDF text, e.g. a node's
    robot_description), else on ``agent.robot.urdf``."""
    if cfg.dynamics.type == "model_prior":
        from .dynamics.model_prior import ModelStep, model_fitter

        if cfg.dynamics.model_urdf is not None:
            step = ModelStep(cfg.agent, urdf=cfg.dynamics.model_urdf)
        else:
            step = ModelStep(cfg.agent, urdf=urdf, task=task)
        return model_fitter(cfg.dynamics, step, seed=cfg.seed)
    return DynamicsFitter.from_config(cfg.dynamics, seed=cfg.seed)


def build_algorithm(cfg: ExperimentConfig, agent):
    """The loop of ``cfg.algorithm.type`` over ``agent`` (a SimAgent or any Sampler exposing
    ``task``, the :class:`~gps_ros.task.TaskModel`): LQR-FLM, MDGPS or BADMM, or a model-based
    learner (:mod:`gps_ros.mbrl`)."""
    task = agent.task
    if cfg.algorithm.type in MODEL_BASED:
        from .mbrl import build_model_based

        return build_model_based(cfg, agent, task)
    cost = build_cost(cfg, task)
    controllers = build_initial_controllers(cfg, task, cost)
    args = (cfg.algorithm, agent, build_fitter(cfg, task), cost, controllers, cfg.seed)
    kwargs = dict(loop_kwargs(cfg, task), optimizer=build_trajectory_optimizer(cfg.algorithm))
    if cfg.algorithm.type == "lqr_flm":
        return LQRFLM(*args, **kwargs)
    policy, prior = build_policy(cfg, task)
    return build_policy_search(cfg, args, kwargs, policy, prior)


def build_policy_search(cfg: ExperimentConfig, args, kwargs, policy, prior) -> MDGPS:
    """MDGPS or BADMM (by ``cfg.algorithm.type``) around a policy stage, with the policy section's
    settings — shared by the in-process loop and the ROS coordinator (whose stages are proxies)."""
    pc = cfg.policy
    if cfg.algorithm.type == "badmm":
        return BADMM(*args, policy=policy, policy_prior=prior, linearization=pc.linearization,
                     lambda0=pc.badmm_lambda0, target_kl=pc.badmm_target_kl, **kwargs)
    return MDGPS(*args, policy=policy, policy_prior=prior, on_policy=pc.on_policy,
                 linearization=pc.linearization, warmup_iterations=pc.warmup_iterations,
                 warmup_kl_step=pc.warmup_kl_step, warmup_max_step_mult=pc.warmup_max_step_mult,
                 **kwargs)


def build_policy_prior(cfg: ExperimentConfig):
    """The GMM prior of the policy linearisation (``policy.prior``), in-process and over ROS."""
    from .dynamics import PolicyPriorGMM

    p = cfg.policy.prior
    return PolicyPriorGMM(max_clusters=p.max_clusters, min_samples_per_cluster=p.min_samples_per_cluster,
                          max_samples=p.max_samples, strength=p.strength,
                          em_iterations=p.em_iterations, seed=cfg.seed)


def build_trainer(cfg: ExperimentConfig, joint_dim: int, action_dim: int):
    """The policy network and its trainer as ``cfg.policy`` describes them (needs torch)."""
    from .policy.distill import PolicyTrainer
    from .policy.network import NetworkConfig

    pc = cfg.policy
    cam = getattr(cfg.agent, "camera", None)
    size = (cam.height, cam.width) if cam is not None else (64, 64)
    net_cfg = NetworkConfig(image_size=size, joint_dim=joint_dim, action_dim=action_dim,
                            conv_channels=list(pc.conv_channels), conv_kernels=list(pc.conv_kernels),
                            conv_strides=list(pc.conv_strides), hidden=list(pc.hidden),
                            use_image=pc.use_image,
                            aux_dim=3 if pc.aux_weight > 0 and pc.use_image else 0)
    return PolicyTrainer(net_cfg, lr=pc.lr, batch_size=pc.batch_size, iterations=pc.iterations,
                         weight_decay=pc.weight_decay, seed=cfg.seed, shift=pc.shift,
                         aux_weight=pc.aux_weight, device=pc.device, renormalise=pc.renormalise)


def build_policy(cfg: ExperimentConfig, task):
    """The global policy stage and its linearisation prior (needs torch)."""
    from .policy.global_policy import GlobalPolicy

    pc = cfg.policy
    if pc.use_image and getattr(cfg.agent, "camera", None) is None:
        raise ExperimentError("policy.use_image needs agent.camera (or set policy.use_image: false)")
    lay = task.layout
    if pc.state_inputs == "full":
        joint_idx = np.arange(task.dX)
    else:
        joint_idx = lay.joint_state_indices
    trainer = build_trainer(cfg, len(joint_idx), task.dU)
    prior = build_policy_prior(cfg)
    targets = np.array([c.target for c in cfg.agent.conditions]) if pc.aux_weight > 0 else None
    pretrain = None
    if pc.pretrain_frames and pc.use_image:
        from .policy.pretrain import PretrainSource

        pretrain = PretrainSource(cfg.agent, pc.pretrain_frames, seed=cfg.seed + 7919,
                                  joint_noise=pc.pretrain_joint_noise)
    return GlobalPolicy(trainer, joint_idx, aux_targets=targets, replay=pc.replay,
                        pretrain=pretrain, pretrain_iterations=pc.pretrain_iterations,
                        pretrain_lr=pc.pretrain_lr), prior


def _state_of(algo: LQRFLM) -> dict:
    if not isinstance(algo, LQRFLM):
        return algo.state()                       # a model-based learner
    state = {"iteration": algo.iteration, "trials": algo.trials, "conditions": algo.conditions,
             "fitter": algo.fitter}
    if isinstance(algo, MDGPS):
        state.update(policy=algo.policy, policy_prior=algo.policy_prior)
    if isinstance(algo, BADMM):
        state["badmm_lambdas"] = algo.lambdas
    return state


def _task_signature(cfg: ExperimentConfig) -> dict:
    """What a saved controller is tied to: horizon, conditions (start and target), EE points."""
    a = cfg.agent
    return {"T": a.T, "targets": [list(c.target) for c in a.conditions],
            "starts": [list(c.start_joint_positions or a.start_joint_positions) for c in a.conditions],
            "ee_points": [list(p) for p in a.ee_points]}


def _check_state(algo: LQRFLM, state: dict, cfg: Optional[ExperimentConfig] = None) -> None:
    """Refuse (one line) a saved state whose controllers do not fit this config's task."""
    where = "state.pkl"
    if not isinstance(algo, LQRFLM) or state.get("model_based"):
        if isinstance(algo, LQRFLM):
            raise ExperimentError(f"{where} holds a {state['model_based']['kind']} learner; the "
                                  f"config asks for {cfg.algorithm.type if cfg else 'GPS'}")
        try:
            algo.check(state)                   # kind and shapes
        except ValueError as err:
            raise ExperimentError(f"{where}: {err}") from None
        _check_task(state, cfg, where)
        return
    if len(state["conditions"]) != algo.M:
        raise ExperimentError(f"{where} has {len(state['conditions'])} conditions, the config has "
                              f"{algo.M}; it belongs to another task")
    for m, (saved, new) in enumerate(zip(state["conditions"], algo.conditions)):
        c = getattr(saved, "controller", None)
        if c is None or not hasattr(c, "K"):
            raise ExperimentError(f"{where}: condition {m} holds no controller")
        if c.K.shape != new.controller.K.shape:
            (T, dU, dX), (T2, dU2, dX2) = c.K.shape, new.controller.K.shape
            raise ExperimentError(f"{where}: condition {m} controller has T={T}, dU={dU}, dX={dX}; "
                                  f"the config needs T={T2}, dU={dU2}, dX={dX2}")
    _check_task(state, cfg, where)


def _check_task(state: dict, cfg: Optional[ExperimentConfig], where: str) -> None:
    saved_task = state.get("task")
    if cfg is not None and saved_task is not None:
        now = _task_signature(cfg)
        for key in now:
            if saved_task.get(key) != now[key]:
                raise ExperimentError(f"{where} was saved for another task: agent {key} "
                                      f"{saved_task.get(key)} != config's {now[key]}")
    if not isinstance(state["iteration"], int) or state["iteration"] < 0:
        raise ExperimentError(f"{where}: bad iteration {state['iteration']!r}")


def _restore(algo: LQRFLM, state: dict) -> None:
    _check_state(algo, state)
    if not isinstance(algo, LQRFLM):
        algo.restore(state)
        return
    algo.iteration = state["iteration"]
    algo.trials = state["trials"]
    algo.conditions = state["conditions"]
    algo.fitter = state["fitter"]
    if isinstance(algo, MDGPS):
        algo.policy, algo.policy_prior = state["policy"], state["policy_prior"]
    if isinstance(algo, BADMM) and "badmm_lambdas" in state:
        algo.lambdas = np.asarray(state["badmm_lambdas"], dtype=float)


def default_out_dir(cfg: ExperimentConfig) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.name}-seed{cfg.seed}-{stamp}"


def format_line(m: dict, total: int) -> str:
    dist = " ".join(f"{100 * d:5.1f}" for d in m["final_distance"])
    t = m["time"]
    return (f"iter {m['iteration']:3d}/{total}  trials {m['trials']:4d}  cost {m['cost']:10.3f}  "
            f"final dist cm [{dist}]  "
            + (f"inserted [{' '.join(f'{v:.0%}' for v in m['inserted'])}]  " if "inserted" in m else "")
            + (f"eval dist cm [{' '.join(f'{100 * d:5.1f}' for d in m['eval_final_distance'])}]  "
               if "eval_final_distance" in m else "")
            + (f"step {np.mean(m['step_mult']):.2f}  " if "step_mult" in m else "")
            + f"time s: sample {t['sample']:.1f} dyn {t['dynamics']:.2f} "
            + (f"lqr {t['lqr']:.2f} " if "lqr" in t else "")
            + (f"policy {t['policy']:.1f} " if "policy" in t else "")
            + (f"distill {t['distill']:.1f} " if "distill" in t else "")
            + f"total {t['total']:.1f}")


def run(exp: Experiment, algo: LQRFLM, iterations: int, progress: bool = True,
        on_iteration: Optional[Callable[[dict], None]] = None,
        resume_hint: Optional[str] = None,
        on_result: Optional[Callable[[LQRFLM, object], None]] = None) -> list:
    """Run ``algo`` until it has completed ``iterations``, writing everything to ``exp``.  A full
    disk raises :class:`DiskFull`, whose line ends with ``resume_hint`` (default: the
    ``gps-ros train --resume`` command).  After each committed iteration ``on_iteration(metrics)``
    and ``on_result(algo, result)`` (the whole :class:`~gps_ros.algorithm.IterationResult`, e.g.
    for the coordinator's live view)."""
    from tqdm import tqdm

    rows = [r for r in exp.read_metrics() if r["iteration"] <= algo.iteration]
    bar = tqdm(total=iterations, initial=algo.iteration, desc=exp.cfg.name, unit="it",
               disable=not progress, dynamic_ncols=True, leave=False)
    layout = getattr(algo.sampler, "layout", None)
    scalars = None
    exp.drop_old_images(algo.iteration)   # finishes a pass a kill cut short after the last commit
    committed = start = algo.iteration
    try:
        while algo.iteration < iterations:
            res = algo.run_iteration()
            exp.write_iteration(res, [st.controller for st in algo.conditions])
            rows.append(res.metrics)
            exp.write_metrics(rows)
            exp.plot(rows)
            if layout is not None:
                exp.plot_paths(res.iteration, res.samples, layout.ee_points.start)
            if scalars is None:
                scalars = exp.scalar_writer(purge_step=res.iteration) or False
            if scalars:
                scalars.add_scalars(res.iteration, metrics_scalars(res.metrics))
            state = _state_of(algo)
            state["task"] = _task_signature(exp.cfg)
            exp.save_state(state)                  # the commit point of this iteration
            if committed == start:                 # this session's first commit: what runs it
                exp.record_environment(start)
            committed = algo.iteration
            exp.drop_old_images(algo.iteration)
            line = format_line(res.metrics, iterations)
            if progress:
                tqdm.write(line)
            log.info(line)
            bar.update(1)
            bar.set_postfix(dist_cm=f"{100 * max(res.metrics['final_distance']):.1f}")
            if on_iteration is not None:
                on_iteration(res.metrics)
            if on_result is not None:
                on_result(algo, res)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # every write is atomic: the last committed iteration and its files are intact
        where = f" writing {err.filename}" if err.filename else ""
        hint = resume_hint or f"resume with gps-ros train --resume {exp.root}"
        raise DiskFull(f"no space left on the device{where}; {exp.root} keeps iteration "
                       f"{committed}: free space and {hint}") from err
    finally:
        bar.close()
        if scalars:
            scalars.close()
    return rows


class DiskFull(RuntimeError):
    """The disk filled up mid-training: one line saying where, what is kept and how to resume."""


def _build(cfg: ExperimentConfig):
    """Agent and algorithm for ``cfg``; task-level errors (e.g. a start pose with the wrong number
    of joints) become one-line :class:`ConfigError` s before anything is written."""
    from .agents import SimAgent

    try:
        agent = SimAgent(cfg.agent)
    except ValueError as err:
        raise ConfigError(f"config error: {err}") from None
    try:
        return agent, build_algorithm(cfg, agent)
    except ValueError as err:
        agent.close()
        raise ConfigError(f"config error: {err}") from None
    except BaseException:
        agent.close()
        raise


def create_experiment(out: str | Path, cfg: ExperimentConfig,
                      iterations: Optional[int] = None) -> Experiment:
    """A new experiment in ``out`` whose target is ``iterations`` (default ``cfg.iterations``),
    recorded in its config.yaml; ``cfg`` itself is not changed."""
    if iterations and iterations != cfg.iterations:
        cfg = cfg.model_copy()
        cfg.iterations = iterations                 # validated (>= 1)
    return Experiment.create(out, cfg)


def restore_experiment(exp: Experiment, algo: LQRFLM, cfg: ExperimentConfig,
                       iterations: Optional[int] = None,
                       on_restored: Optional[Callable[[LQRFLM], None]] = None) -> None:
    """Bring ``algo`` (built from ``cfg``) to the last complete iteration of ``exp`` and make the
    experiment ready to go on: its state restored (``on_restored(algo)`` then, e.g. to plug ROS
    transports back in), stale temp files removed, a torn metrics line dropped, ``iterations`` (if
    given) the new target.

    Recovery (see :mod:`gps_ros.experiment`): an unreadable state.pkl falls back to
    state.prev.pkl; the state is checked against the task before anything in the experiment
    is changed."""
    state = exp.load_state(check_metrics=True)
    if state is not None:
        _check_state(algo, state, cfg)
        _restore(algo, state)
        if on_restored is not None:
            on_restored(algo)
    exp.remove_stale_temp_files()
    exp.repair_metrics()
    if iterations:
        exp.set_iterations(iterations)


def train(cfg: ExperimentConfig, out: Optional[str | Path] = None, iterations: Optional[int] = None,
          progress: bool = True) -> Path:
    """Start a new run of ``cfg`` in ``out`` with ``iterations`` (default ``cfg.iterations``)
    iterations, recorded as the run's target in its config.yaml; return the experiment
    directory.  ``cfg`` itself is not changed."""
    out = Path(out) if out is not None else default_out_dir(cfg)
    agent, algo = _build(cfg)
    try:
        exp = create_experiment(out, cfg, iterations)
        run(exp, algo, exp.cfg.iterations, progress)
    finally:
        agent.close()
    return out


def resume(out: str | Path, iterations: Optional[int] = None, progress: bool = True) -> Path:
    """Continue the run in ``out`` from its last complete iteration to its target (the
    iterations it was started with); ``iterations`` sets a new target, which the run keeps
    (:func:`restore_experiment`)."""
    exp = Experiment.open(out)
    cfg = exp.cfg
    agent, algo = _build(cfg)
    try:
        restore_experiment(exp, algo, cfg, iterations)
        target = cfg.iterations
        if algo.iteration >= target:
            log.info("%s already has %d iterations (target %d)", out, algo.iteration, target)
        run(exp, algo, target, progress)
    finally:
        agent.close()
    return Path(out)
