"""Gymnasium wrapper of the reaching task on the configured robot (``"GpsRos/Reach-v0"``, formerly
``"GpsRos/PandaReach-v0"``; with ``agent.peg``, of peg insertion, see the end).

* observation: the :class:`~gps_ros.sim.arm.ArmSim` state vector (dX,), float32
  (joint positions, joint velocities, EE points relative to their targets, EE point velocities).
* action: the robot's command (n,) in the units of ``agent.robot.command``: joint torques in N m
  on top of the simulated gravity compensation, within ``torque_limit_scale`` x the URDF effort
  limits; joint velocities in rad/s within ``velocity_limit_scale`` x the velocity limits; or
  joint positions in rad within the joint limits (a continuous joint's within ±2π).  Actions
  outside are clipped.
* episode: ``cfg.T`` control steps, then ``truncated=True``.  ``terminated`` is only set if the
  state becomes non-finite (never seen in practice; the observation is then zeroed).  A joint
  speed above 10 rad/s (what :class:`~gps_ros.agents.sim.SimAgent` treats as a blown-up trial)
  does *not* end the episode, since with negative rewards an early end would be a reward for
  blowing up; ``info["max_joint_speed"]`` reports it instead.  Note that the wrist joints reach
  10 rad/s within a control step at full torque (12 N m against 0.5 N m s/rad damping).
* reward: the GPS distance penalty on the EE origin plus a small torque penalty,

      r = -(0.5 * l2 * d^2 + l1 * sqrt(alpha + d^2)) - w_u * sum(e^2)

  with ``l2 = 10, l1 = 1, alpha = 1e-5, w_u = 1e-3`` (class attributes), ``d`` the distance of
  the EE origin to the target after the step and ``e`` the applied (clipped) command relative to
  what holds the joints' motion (:mod:`gps_ros.robot.actuation`): the torque itself, the velocity
  command minus the joint velocity, the position command minus the position reached by coasting
  one period (``q + dt q̇``).
* ``reset(seed=..., options={"condition": i})`` starts condition ``i``; without it a condition
  is drawn uniformly with the env's RNG.  ``info`` holds ``"distance"`` and ``"condition"``.

**Peg insertion** (the config has ``agent.peg``, :mod:`gps_ros.sim.peg`): the distance penalty is
the GPS cost's (:func:`gps_ros.task.build_cost`) on *all* the EE points (peg tip, shaft, grasp
point; in the state relative to their positions at full insertion), one term per ``cost.ee``
entry with ``on: points``:

      r = -sum_terms weight * (0.5 * l2 * s + l1 * sqrt(alpha + s)) - w_u * sum(u^2),
      s = sum over the EE points i and coordinates j of (wp_j (p_ij - p*_ij))^2

(``wp`` the term's per-coordinate weights, 3 values tiled over the points or 3 per point, all 1
when null; e.g. ``[1, 1, 0]`` for the horizontal alignment term of ``config/panda_peg.yaml``),
with ``cost`` from the ``ExperimentConfig``/YAML (the defaults of
:class:`~gps_ros.config.CostConfig` when an ``AgentConfig`` alone is given).  The terms' time ramps are left out (every step weighs
the same: the observation holds no time, so a time-varying reward would not be Markov), and so
are ``on: velocities`` terms; the torque penalty is the reach env's.  ``info`` also holds
``"insertion_depth"`` (m) and ``"inserted"`` (bool) from :meth:`ArmSim.insertion`;
``"distance"`` stays the EE origin's distance to its full-insertion position.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Union

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gps_ros.paths import default_config_path
from gps_ros.config import AgentConfig, CostConfig, ExperimentConfig, load_config
from gps_ros.robot.actuation import Actuation
from gps_ros.sim.arm import ArmSim
from gps_ros.task import point_weights


def _configs(config: Union[AgentConfig, ExperimentConfig, str, Path, None]
             ) -> tuple[AgentConfig, CostConfig]:
    """(agent config, cost config); an ``AgentConfig`` alone gets the default cost config."""
    if config is None:
        config = default_config_path()
    if isinstance(config, (str, Path)):
        config = load_config(config)
    cost = CostConfig()
    if isinstance(config, ExperimentConfig):
        config, cost = config.agent, config.cost
    if not isinstance(config, AgentConfig):
        raise TypeError(f"config must be an AgentConfig, ExperimentConfig or a YAML path, "
                        f"got {type(config).__name__}")
    return config, cost


def _agent_config(config: Union[AgentConfig, ExperimentConfig, str, Path, None]) -> AgentConfig:
    return _configs(config)[0]


class ReachEnv(gym.Env):
    metadata = {"render_modes": ["human"], "render_fps": 20}

    l2 = 10.0
    l1 = 1.0
    alpha = 1e-5
    action_weight = 1e-3

    def __init__(self, config: Union[AgentConfig, ExperimentConfig, str, Path, None] = None,
                 render_mode: Optional[str] = None, gravity_update: Optional[str] = None) -> None:
        cfg, cost = _configs(config)
        if render_mode not in (None, "human"):
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        if render_mode == "human" and not cfg.gui:
            cfg = cfg.model_copy(update={"gui": True})
        self.render_mode = render_mode
        self.cfg = cfg
        self.sim = ArmSim(cfg, gravity_update=gravity_update)
        self.metadata = dict(self.metadata, render_fps=cfg.control_rate_hz)
        sim = self.sim
        lo, hi = sim.task.command_bounds()
        self._lo, self._hi = lo, hi
        self.action_space = spaces.Box(lo.astype(np.float32), hi.astype(np.float32), dtype=np.float32)
        self._Aq, self._Av = Actuation(sim.command, sim.dt).action_reference(sim.dU)
        self._qp = self.sim.layout.joint_pos
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(self.sim.dX,), dtype=np.float32)
        self._t = 0
        self._condition = 0
        self._qd = self.sim.layout.joint_vel
        # peg: the GPS cost's distance-penalty terms on all the EE points, (weight, l2, l1, alpha)
        self.peg = cfg.peg is not None
        self._ee_idx = self.sim.layout.ee_indices
        self.point_terms = [(float(e.weight), point_weights(e.wp, len(self._ee_idx)), float(e.l2), float(e.l1),
                             float(e.alpha)) for e in cost.ee if e.on == "points"] if self.peg else []

    def _distance(self, x: np.ndarray) -> float:
        return float(self.sim.ee_distance(x))

    def points_penalty(self, x: np.ndarray) -> float:
        """Peg: the GPS distance penalty on all the EE points (target-relative) of state ``x``,
        summed over the ``cost.ee`` point terms (without their time ramps)."""
        e = np.asarray(x, dtype=np.float64)[self._ee_idx]
        out = 0.0
        for w, wp, l2, l1, a in self.point_terms:
            s = float(np.sum((wp * e) ** 2))
            out += w * (0.5 * l2 * s + l1 * math.sqrt(a + s))
        return out

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
        self._x = x
        info: dict[str, Any] = {"distance": self._distance(x), "condition": cond}
        if self.peg:
            depth, ok = self.sim.insertion(x)
            info["insertion_depth"], info["inserted"] = float(depth), bool(ok)
        return x.astype(np.float32), info

    def step(self, action):
        """One control step with ``action`` (clipped to the command limits): (observation,
        reward, terminated, truncated, info) as Gymnasium defines them; ``info`` has the
        condition, the distance to the target (and the insertion depth for the peg)."""
        u = np.asarray(action, dtype=np.float64).reshape(self.sim.dU)
        if not np.isfinite(u).all():
            raise ValueError(f"non-finite action {u}")
        u = np.clip(u, self._lo, self._hi)
        e = u if self.sim.command == "effort" else u - self._Aq @ self._x[self._qp] - self._Av @ self._x[self._qd]
        x = self.sim.step(u)
        self._x = x
        self._t += 1
        info: dict[str, Any] = {"condition": self._condition}
        terminated = False
        if not np.isfinite(x).all():
            terminated, info["blown_up"] = True, "non-finite state"
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        info["max_joint_speed"] = float(np.abs(x[self._qd]).max())
        d = self._distance(x)
        if self.peg:
            reward = -self.points_penalty(x) - self.action_weight * float(e @ e)
            depth, ok = self.sim.insertion(x)
            info["insertion_depth"], info["inserted"] = float(depth), bool(ok)
        else:
            d2 = d * d
            reward = -(0.5 * self.l2 * d2 + self.l1 * math.sqrt(self.alpha + d2)) \
                - self.action_weight * float(e @ e)
        info["distance"] = d
        truncated = self._t >= self.cfg.T
        return x.astype(np.float32), float(reward), terminated, truncated, info

    def render(self):
        return None  # "human": the PyBullet GUI window draws itself

    def close(self):
        self.sim.close()


#: the former name of :class:`ReachEnv`
PandaReachEnv = ReachEnv
