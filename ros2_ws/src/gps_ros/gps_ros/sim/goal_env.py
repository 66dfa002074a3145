"""Goal-conditioned reaching (``"GpsRos/GoalReach-v0"``): the Gymnasium-Robotics ``GoalEnv`` API
over the configured robot, for hindsight relabelling (HER) and goal-conditioned learners (TQC / SAC
+ ``HerReplayBuffer``), as panda-gym and rl-baselines3-zoo pose their Panda reach.

* ``observation``: a dict of
  ``observation`` — joint positions, joint velocities, the EE points' positions in the base frame
  and their velocities (the :class:`~gps_ros.sim.gym_env.ReachEnv` state with the EE points made
  absolute: no target in it), ``achieved_goal`` — the EE origin's position (3,), and
  ``desired_goal`` — the goal (3,); float32.
* goals: at each reset drawn uniformly from ``agent.target_region`` (required), or
  ``options={"condition": i}`` the config's training target i, or ``options={"goal": [x, y, z]}``.
  The arm starts at the start pose of condition 0 (or of ``options["condition"]``).
* action, episode, blow-up reporting: :class:`ReachEnv`'s (the robot's command within its limits,
  ``cfg.T`` steps then ``truncated``).
* reward, :meth:`GoalReachEnv.compute_reward` on (achieved, desired) alone, as HER needs it:
  ``sparse`` (default) ``−1`` unless the EE origin is within ``distance_threshold`` (2 cm, the
  package's success distance) of the goal, else 0; ``dense`` the negative GPS distance penalty
  ``−(½ l2 d² + l1 √(α + d²))`` of :class:`ReachEnv` (no torque term: it would not be a function of
  the goals).  ``info["is_success"]`` is d < ``distance_threshold``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from gymnasium import spaces

from gps_ros.config import AgentConfig, ExperimentConfig
from gps_ros.sim.gym_env import ReachEnv, _configs


class GoalReachEnv(ReachEnv):
    def __init__(self, config: Union[AgentConfig, ExperimentConfig, str, Path, None] = None,
                 reward_type: str = "sparse", distance_threshold: float = 0.02,
                 render_mode: Optional[str] = None) -> None:
        cfg, _ = _configs(config)
        if cfg.target_region is None:
            raise ValueError("GoalReachEnv draws goals from agent.target_region; the config has none")
        if cfg.peg is not None:
            raise ValueError("GoalReachEnv is the reach task; the config has agent.peg")
        if reward_type not in ("sparse", "dense"):
            raise ValueError(f"reward_type must be sparse or dense, not {reward_type!r}")
        super().__init__(config, render_mode=render_mode)
        self.reward_type = reward_type
        self.distance_threshold = float(distance_threshold)
        self._lo_goal = np.asarray(cfg.target_region.low, float)
        self._hi_goal = np.asarray(cfg.target_region.high, float)
        self._goal = np.zeros(3)
        dX = self.sim.dX
        box = lambda n: spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)  # noqa: E731
        self.observation_space = spaces.Dict({"observation": box(dX), "achieved_goal": box(3),
                                              "desired_goal": box(3)})

    # --- the goal dict ---------------------------------------------------------------------------
    def _absolute(self, x: np.ndarray) -> np.ndarray:
        """The state with the EE points in the base frame (the condition's targets added back)."""
        out = np.asarray(x, dtype=np.float64).copy()
        out[self._ee_idx] += self.sim.task.ee_targets(self._condition).ravel()
        return out

    def _obs(self, x: np.ndarray) -> dict:
        a = self._absolute(x)
        return {"observation": a.astype(np.float32),
                "achieved_goal": a[self._ee_idx[:3]].astype(np.float32),
                "desired_goal": self._goal.astype(np.float32)}

    def compute_reward(self, achieved_goal, desired_goal, info=None) -> np.ndarray:
        """Reward(s) of achieved vs desired goal(s) (..., 3), vectorised (HER relabels with it)."""
        d = np.linalg.norm(np.asarray(achieved_goal, float) - np.asarray(desired_goal, float), axis=-1)
        if self.reward_type == "sparse":
            return -(d >= self.distance_threshold).astype(np.float32)
        return -(0.5 * self.l2 * d * d + self.l1 * np.sqrt(self.alpha + d * d)).astype(np.float32)

    # --- Gymnasium ----------------------------------------------------------------------------------
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        options = dict(options or {})
        goal = options.pop("goal", None)
        cond = options.get("condition")
        x, info = super().reset(seed=seed, options={"condition": 0 if cond is None else cond})
        if goal is not None:
            self._goal = np.asarray(goal, dtype=np.float64).reshape(3)
        elif cond is not None:
            self._goal = np.asarray(self.cfg.conditions[int(cond)].target, dtype=np.float64)
        else:
            self._goal = self.np_random.uniform(self._lo_goal, self._hi_goal)
        obs = self._obs(x)
        info.update(self._goal_info(obs))
        return obs, info

    def step(self, action):
        x, _, terminated, truncated, info = super().step(action)
        obs = self._obs(x)
        info.update(self._goal_info(obs))
        reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"], info))
        return obs, reward, terminated, truncated, info

    def _goal_info(self, obs: dict) -> dict[str, Any]:
        d = float(np.linalg.norm(obs["achieved_goal"].astype(np.float64) - self._goal))
        return {"goal_distance": d, "is_success": d < self.distance_threshold}
