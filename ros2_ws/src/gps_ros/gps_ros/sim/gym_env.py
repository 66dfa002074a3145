"""Gymnasium wrapper of the Panda reaching task (``"GpsRos/PandaReach-v0"``).

* observation: the :class:`~gps_ros.sim.panda.PandaReachSim` state vector (dX,), float32
  (joint positions, joint velocities, EE points relative to their targets, EE point velocities).
* action: joint torques (7,) in N m, on top of the simulated gravity compensation, within
  ``torque_limit_scale`` x the URDF effort limits (larger values are clipped by the simulator).
* episode: ``cfg.T`` control steps, then ``truncated=True``.  ``terminated`` is only set if the
  state becomes non-finite (never seen in practice; the observation is then zeroed).  A joint
  speed above 10 rad/s (what :class:`~gps_ros.agents.sim.SimAgent` treats as a blown-up trial)
  does *not* end the episode, since with negative rewards an early end would be a reward for
  blowing up; ``info["max_joint_speed"]`` reports it instead.  Note that the wrist joints reach
  10 rad/s within a control step at full torque (12 N m against 0.5 N m s/rad damping).
* reward: the GPS distance penalty on the EE origin plus a small torque penalty,

      r = -(0.5 * l2 * d^2 + l1 * sqrt(alpha + d^2)) - w_u * sum(u^2)

  with ``l2 = 10, l1 = 1, alpha = 1e-5, w_u = 1e-3`` (class attributes), ``d`` the distance of
  the EE origin to the target after the step and ``u`` the applied (clipped) torque.
* ``reset(seed=..., options={"condition": i})`` starts condition ``i``; without it a condition
  is drawn uniformly with the env's RNG.  ``info`` holds ``"distance"`` and ``"condition"``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Union

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gps_ros.config import AgentConfig, ExperimentConfig, load_config
from gps_ros.sim.panda import PandaReachSim


def default_config_path() -> Path:
    """``config/panda_reach.yaml`` of the source tree, else of the installed ROS 2 share dir."""
    here = Path(__file__).resolve().parents[2] / "config" / "panda_reach.yaml"
    if here.exists():
        return here
    try:  # installed with colcon
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("gps_ros")) / "config" / "panda_reach.yaml"
    except Exception:
        return here


def _agent_config(config: Union[AgentConfig, ExperimentConfig, str, Path, None]) -> AgentConfig:
    if config is None:
        config = default_config_path()
    if isinstance(config, (str, Path)):
        config = load_config(config)
    if isinstance(config, ExperimentConfig):
        config = config.agent
    if not isinstance(config, AgentConfig):
        raise TypeError(f"config must be an AgentConfig, ExperimentConfig or a YAML path, "
                        f"got {type(config).__name__}")
    return config


class PandaReachEnv(gym.Env):
    metadata = {"render_modes": ["human"], "render_fps": 20}

    l2 = 10.0
    l1 = 1.0
    alpha = 1e-5
    action_weight = 1e-3

    def __init__(self, config: Union[AgentConfig, ExperimentConfig, str, Path, None] = None,
                 render_mode: Optional[str] = None, gravity_update: Optional[str] = None) -> None:
        cfg = _agent_config(config)
        if render_mode not in (None, "human"):
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        if render_mode == "human" and not cfg.gui:
            cfg = cfg.model_copy(update={"gui": True})
        self.render_mode = render_mode
        self.cfg = cfg
        self.sim = PandaReachSim(cfg, gravity_update=gravity_update)
        self.metadata = dict(self.metadata, render_fps=cfg.control_rate_hz)
        lim = self.sim.torque_limits.astype(np.float32)
        self.action_space = spaces.Box(-lim, lim, dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(self.sim.dX,), dtype=np.float32)
        self._t = 0
        self._condition = 0
        self._qd = self.sim.layout.joint_vel

    def _distance(self, x: np.ndarray) -> float:
        return float(self.sim.ee_distance(x))

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        n = len(self.cfg.conditions)
        if options and options.get("condition") is not None:
            cond = int(options["condition"])
            if not 0 <= cond < n:
                raise ValueError(f"condition {cond} out of range (have {n})")
        else:
            cond = int(self.np_random.integers(n))
        self._condition = cond
        self._t = 0
        x = self.sim.reset(cond)
        return x.astype(np.float32), {"distance": self._distance(x), "condition": cond}

    def step(self, action):
        u = np.asarray(action, dtype=np.float64).reshape(self.sim.dU)
        if not np.isfinite(u).all():
            raise ValueError(f"non-finite action {u}")
        u = np.clip(u, -self.sim.torque_limits, self.sim.torque_limits)
        x = self.sim.step(u)
        self._t += 1
        info: dict[str, Any] = {"condition": self._condition}
        terminated = False
        if not np.isfinite(x).all():
            terminated, info["blown_up"] = True, "non-finite state"
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        info["max_joint_speed"] = float(np.abs(x[self._qd]).max())
        d = self._distance(x)
        d2 = d * d
        reward = -(0.5 * self.l2 * d2 + self.l1 * math.sqrt(self.alpha + d2)) \
            - self.action_weight * float(u @ u)
        info["distance"] = d
        truncated = self._t >= self.cfg.T
        return x.astype(np.float32), float(reward), terminated, truncated, info

    def render(self):
        return None  # "human": the PyBullet GUI window draws itself

    def close(self):
        self.sim.close()
