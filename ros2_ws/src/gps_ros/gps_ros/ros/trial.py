"""The sampler's trial logic without ROS: the actor of a RunTrial goal, the per-step safety-filtered
control step, and the recording that becomes the result.  ``sampler_node`` only feeds it joint
states and publishes what it returns; tests drive it against an in-process PyBullet arm.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from gps_ros.safety import JointStateSample, SafetyFilter, SafetyStatus

from . import convert

log = logging.getLogger(__name__)


def goal_noise(goal, T: int, dU: int) -> np.ndarray:
    """The trial's standard-normal noise (T, dU): the goal's explicit noise if given, else drawn
    from ``noise_seed`` exactly as the in-process loop does (unsmoothed)."""
    n = convert.unpack_optional(goal.noise, (T, dU), "RunTrial.Goal.noise")
    if n is not None:
        return n
    return np.random.default_rng(int(goal.noise_seed)).standard_normal((T, dU))


class TorchScriptPolicyActor:
    """Runs an exported policy (:func:`gps_ros.policy.export.export_torchscript`) step by step:
    u = net(image, joint state) + L ε.  One torch thread (the control loop must not fight the
    executor for cores).

    An export whose ``config.json`` says ``noise_input`` (a model-based learner's SAC actor,
    :func:`gps_ros.mbrl.sac.export_actor`) explores on its own: u = net(image, state, ε), nothing
    added; its ``state_indices`` name the entries of the sampler's state it reads (the full GPS
    state: the sampler must compute the EE points, ``state_source`` fk, gps_state or the embedded
    simulator)."""

    needs_image = True

    def __init__(self, path: str, joint_idx: np.ndarray, chol: Optional[np.ndarray] = None,
                 num_threads: int = 1) -> None:
        import torch

        from gps_ros.policy.export import load_torchscript

        torch.set_num_threads(num_threads)
        self._torch = torch
        from gps_ros.policy.export import has_feature_pixels

        self.module, self.config = load_torchscript(path)
        self.has_feature_pixels = has_feature_pixels(self.module)
        # a blind network (policy.use_image: false) runs without camera frames
        self.needs_image = bool(self.config.get("use_image", True))
        self.joint_idx = np.asarray(self.config.get("state_indices", joint_idx))
        self.noise_input = bool(self.config.get("noise_input", False))
        self.chol = chol
        H, W = self.config.get("image_size", (64, 64))
        self._blank = torch.zeros(1, H, W, 3, dtype=torch.uint8)
        # TorchScript optimises a module on its first calls (~80 ms on the first step of a
        # 500 Hz trial otherwise): run those before the trial starts
        dq = int(self.config.get("joint_dim", len(self.joint_idx)))
        q = torch.zeros(1, dq, dtype=torch.float32)
        extra = (torch.zeros(1, int(self.config["action_dim"])),) if self.noise_input else ()
        with torch.no_grad():
            for _ in range(3):
                self.module(self._blank, q, *extra)

    def feature_pixels(self, image: np.ndarray) -> Optional[np.ndarray]:
        """The policy's feature points (n, 2) as (u, v) pixels of ``image``; None without them."""
        if not self.has_feature_pixels:
            return None
        torch = self._torch
        with torch.no_grad():
            return self.module.feature_pixels(torch.from_numpy(np.ascontiguousarray(image))[None])[0].numpy()

    def act(self, t: int, x: np.ndarray, noise: Optional[np.ndarray] = None,
            image: Optional[np.ndarray] = None) -> np.ndarray:
        torch = self._torch
        with torch.no_grad():
            q = torch.from_numpy(np.ascontiguousarray(x[self.joint_idx], dtype=np.float32))[None]
            img = torch.from_numpy(np.ascontiguousarray(image))[None] if image is not None else self._blank
            if self.noise_input:
                eps = np.zeros(int(self.config["action_dim"])) if noise is None else noise
                return self.module(img, q, torch.from_numpy(
                    np.ascontiguousarray(eps, dtype=np.float32))[None])[0].double().numpy()
            u = self.module(img, q)[0].double().numpy()
        if noise is not None and self.chol is not None:
            u = u + self.chol @ noise
        return u


def actor_from_goal(goal, joint_idx: Optional[np.ndarray] = None,
                    policy_loader: Optional[Callable] = None):
    """(actor, source name, T, dU) for a RunTrial goal."""
    if int(goal.source) == int(type(goal).SOURCE_CONTROLLER):
        ctrl = convert.controller_from_msg(goal.controller)
        if int(goal.horizon) not in (0, ctrl.T):
            raise convert.ShapeError(f"goal horizon {goal.horizon} != controller horizon {ctrl.T}")
        return ctrl, "controller", ctrl.T, ctrl.dU
    if not goal.policy_checkpoint:
        raise ValueError("RunTrial goal with SOURCE_POLICY needs policy_checkpoint")
    T = int(goal.horizon)
    if T < 1:
        raise ValueError("RunTrial goal with SOURCE_POLICY needs horizon >= 1")
    chol = None
    if len(goal.policy_covariance_cholesky):
        n = int(round(np.sqrt(len(goal.policy_covariance_cholesky))))
        chol = convert.unpack(goal.policy_covariance_cholesky, (n, n),
                              "RunTrial.Goal.policy_covariance_cholesky")
    loader = policy_loader or (lambda path, ch: TorchScriptPolicyActor(path, joint_idx, ch))
    actor = loader(goal.policy_checkpoint, chol)
    dU = chol.shape[0] if chol is not None else int(actor.config.get("action_dim", 7))
    return actor, "policy", T, dU


class TrialRecorder:
    """One trial in progress: ``step(x, joint_state, now, image)`` computes the safe command for
    step t, records (x_t, u_t) and returns (command, status).  A stop condition discards the
    trial with the filter's reason; the remaining steps are held (recorded as the hold command).

    ``U[t]`` is the command actually sent (after the safety filter), which is what the robot's
    dynamics respond to.
    """

    def __init__(self, actor, condition: int, T: int, dX: int, dU: int, noise: np.ndarray,
                 safety: SafetyFilter, seed: Optional[int] = None, source: str = "controller",
                 record_images: bool = False) -> None:
        from gps_ros.sample import TrialMeta

        if noise.shape != (T, dU):
            raise convert.ShapeError(f"noise has shape {noise.shape}, expected ({T}, {dU})")
        self.actor, self.T, self.dX, self.dU = actor, T, dX, dU
        self.noise = noise
        self.safety = safety
        self.X = np.zeros((T, dX))
        self.U = np.zeros((T, dU))
        self.stamps = np.zeros(T)
        self.images = [] if record_images else None
        self.meta = TrialMeta(condition=int(condition), seed=seed, source=source)
        self.t = 0
        self._needs_image = bool(getattr(actor, "needs_image", False))
        safety.begin_trial()

    @property
    def done(self) -> bool:
        return self.t >= self.T

    def discard(self, reason: str) -> None:
        if not self.meta.discarded:
            self.meta.discarded = True
            self.meta.reason = reason
            log.warning("trial of condition %d discarded: %s", self.meta.condition, reason)

    def step(self, x: np.ndarray, joint_state: Optional[JointStateSample], now: float,
             image: Optional[np.ndarray] = None,
             image_age: Optional[float] = None) -> tuple[np.ndarray, SafetyStatus]:
        """``image_age``: the frame's age relative to the joint state (s; inf without a frame)
        when the trial uses camera frames, checked by the safety filter (stale -> held)."""
        t = self.t
        if t >= self.T:
            raise RuntimeError("trial already complete")
        if self.meta.discarded:   # keep holding after a stop
            u = self.safety.hold(joint_state)
            status = SafetyStatus("held", self.meta.reason, stopped=True)
        else:
            if self._needs_image:
                raw = self.actor.act(t, x, self.noise[t], image=image)
            else:
                raw = self.actor.act(t, x, self.noise[t])
            u, status = self.safety.filter(raw, joint_state, now, image_age)
            if status.stopped:
                self.discard(f"t={t}: {status.reason}")
        self.X[t] = x
        if u is None:      # position mode before any joint position: nothing was sent
            self.discard(f"t={t}: no joint position to hold at")
            self.U[t] = self.U[t - 1] if t > 0 else 0.0
        else:
            self.U[t] = u
        self.stamps[t] = now
        if self.images is not None and image is not None:
            self.images.append(image)
        self.t = t + 1
        return u, status

    def abort(self, reason: str) -> None:
        """End early (cancel, shutdown, timeout): fill the rest with the last state and hold."""
        self.discard(reason)
        if self.t < self.T:
            last_x = self.X[self.t - 1] if self.t > 0 else 0.0
            self.X[self.t:] = last_x
            hold = self.safety.hold(None)      # the hold the robot received (position: the pose)
            self.U[self.t:] = 0.0 if hold is None else hold
            self.t = self.T

    def result(self, msg, types=convert.PlainTypes, image_dir: Optional[Path] = None):
        """Fill a Trajectory message; images inline, or one .npz under ``image_dir`` if given."""
        images = None
        paths = []
        if self.images:
            arr = np.stack(self.images)
            if len(arr) == self.T:
                if image_dir is not None:
                    from gps_ros.atomic import atomic_savez

                    image_dir.mkdir(parents=True, exist_ok=True)
                    p = image_dir / f"images_c{self.meta.condition}_{time.time_ns()}.npz"
                    atomic_savez(p, image=arr)
                    paths = [str(p.absolute())]     # the trainer may run in another directory
                else:
                    images = arr
        return convert.trial_to_msg(self.X, self.U, self.meta, msg, types, stamps=self.stamps,
                                    images=images, image_paths=paths)


#: the reason of a trial in which the robot did not move (prefix; the coordinator stops on it)
NO_RESPONSE = "robot did not respond"


def check_response(X: np.ndarray, U: np.ndarray, joint_pos_idx, min_motion: float = 1e-3,
                   min_command: float = 1e-6) -> str:
    """"" if the robot moved during a trial; else the reason (starting with :data:`NO_RESPONSE`).

    A trial in which non-zero commands were sent but no joint moved more than ``min_motion`` rad
    means the commands never reached the robot (a command topic not remapped onto the
    controller, an inactive controller, a robot in its protective stop): training on it would
    fit dynamics to an arm that does not react.

    Args:
        X: (T, dX) recorded states; ``X[:, joint_pos_idx]`` are the joint positions.
        U: (T, dU) commands sent.

        min_motion: rad; the largest joint displacement over the trial below which the robot
            counts as not having moved.

        min_command: commands whose largest magnitude is at most this are "nothing sent".
    """
    q = np.asarray(X)[:, joint_pos_idx]
    if q.shape[0] < 2 or not np.isfinite(q).all():
        return ""
    sent = float(np.abs(U).max()) if np.size(U) else 0.0
    if sent <= min_command:
        return ""
    moved = float(np.abs(q - q[0]).max())
    if moved >= min_motion:
        return ""
    return (f"{NO_RESPONSE}: commands up to {sent:.3g} were sent but no joint moved more than "
            f"{moved:.2g} rad over the trial (threshold {min_motion:g}); check that the command "
            "topic reaches an active controller of the robot")


def sim_host_warning(sim_host: str, my_host: str, service: str) -> str:
    """"" when the sim runs on this host, else the warning (with the rule)."""
    if not sim_host or sim_host == my_host:
        return ""
    return (f"the sim behind {service} runs on host {sim_host!r}, this sampler on {my_host!r}: "
            "every lockstep control step crosses the network twice; run each sim_node on its "
            "sampler's host (train.launch.py role:=samplers starts both there)")


def run_embedded(recorder: TrialRecorder, sim, condition: int, joint_pos, joint_vel,
                 camera: Optional[Callable[[], np.ndarray]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_step: Optional[Callable[[int, np.ndarray], None]] = None) -> None:
    """A whole trial on a simulator the sampler owns (``state_source: embedded_sim``): no message
    per step, the same :class:`TrialRecorder` (safety filter, recording) as on a robot.

    ``should_stop()`` is polled every step (node shutdown, cancel); ``on_step(t, x)`` may publish
    joint states for a viewer.
    """
    x = sim.reset(condition)
    while not recorder.done:
        if should_stop():
            recorder.abort("trial stopped: sampler shutting down or trial cancelled")
            return
        now = clock()
        js = JointStateSample(x[joint_pos], x[joint_vel], now)
        img = camera() if camera is not None else None
        u, status = recorder.step(x, js, now, img)
        if on_step is not None:
            on_step(recorder.t, x)
        if recorder.done:
            break
        x = sim.step(u)              # a held step applies the hold command, as on a robot


def run_lockstep(recorder: TrialRecorder, sim, condition: int, clock: Callable[[], float] = time.monotonic,
                 camera: Optional[Callable[[], np.ndarray]] = None) -> None:
    """A whole trial against an in-process simulator, one control period per command (what sim_node
    + sampler_node do over ROS in ``lockstep`` mode): :func:`run_embedded` on the sim's layout."""
    lay = sim.layout
    run_embedded(recorder, sim, condition, lay.joint_pos, lay.joint_vel, camera=camera, clock=clock)