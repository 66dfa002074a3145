"""The goal-conditioned reach (GoalEnv API): Gymnasium's checker, goals from the target region,
rewards that HER can recompute from the goals alone, the same distance as the reach env on a
training target, and a smoke run of SAC and TQC with hindsight relabelling."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from conftest import small_config_dict
from gps_ros.config import parse_config
from gps_ros.sim import GOAL_ENV_ID
from gps_ros.sim.goal_env import GoalReachEnv
from gps_ros.sim.gym_env import ReachEnv

REGION = {"low": [0.45, -0.15, 0.35], "high": [0.55, 0.15, 0.5]}


def _cfg(T=10, region=True):
    d = small_config_dict()
    d["agent"]["T"] = T
    if region:
        d["agent"]["target_region"] = REGION
    return parse_config(d, "t")


def test_passes_gymnasiums_checker_and_draws_goals_in_the_region():
    env = GoalReachEnv(_cfg())
    try:
        check_env(env, skip_render_check=True)
        goals = np.array([env.reset(seed=i)[0]["desired_goal"] for i in range(20)])
        assert np.all(goals >= np.array(REGION["low"], np.float32) - 1e-6)
        assert np.all(goals <= np.array(REGION["high"], np.float32) + 1e-6)
        assert len(np.unique(goals[:, 0])) == 20
        obs, _ = env.reset(options={"goal": [0.5, 0.0, 0.4]})
        np.testing.assert_allclose(obs["desired_goal"], [0.5, 0.0, 0.4], rtol=1e-6)
    finally:
        env.close()


@pytest.mark.parametrize("reward_type", ["sparse", "dense"])
def test_step_reward_is_compute_reward_of_the_goals(reward_type):
    env = GoalReachEnv(_cfg(), reward_type=reward_type)
    try:
        obs, _ = env.reset(seed=0)
        rng = np.random.default_rng(0)
        ach, des, rew = [], [], []
        for _ in range(10):
            obs, r, _, _, info = env.step(rng.uniform(-5, 5, env.action_space.shape))
            ach.append(obs["achieved_goal"])
            des.append(obs["desired_goal"])
            rew.append(r)
            assert info["is_success"] == (info["goal_distance"] < 0.02)
        np.testing.assert_allclose(env.compute_reward(np.array(ach), np.array(des), None), rew,
                                   rtol=1e-6)
        # relabelled: the achieved goal as the desired one is a success
        assert env.compute_reward(ach[-1], ach[-1], None) == (0.0 if reward_type == "sparse" else
                                                               pytest.approx(-np.sqrt(env.alpha)))
    finally:
        env.close()


def test_on_a_training_target_it_measures_what_the_reach_env_measures():
    cfg = _cfg()
    goal, reach = GoalReachEnv(cfg), ReachEnv(cfg)
    try:
        g, _ = goal.reset(options={"condition": 1})
        r, info_r = reach.reset(options={"condition": 1})
        np.testing.assert_allclose(g["desired_goal"], cfg.agent.conditions[1].target, rtol=1e-6)
        u = np.full(goal.action_space.shape, 2.0)
        for _ in range(5):
            g, _, _, _, ig = goal.step(u)
            r, _, _, _, ir = reach.step(u)
        assert ig["goal_distance"] == pytest.approx(ir["distance"], abs=1e-6)
        np.testing.assert_allclose(g["observation"][:14], r[:14], rtol=1e-6)   # joints alike
    finally:
        goal.close()
        reach.close()


def test_needs_a_target_region():
    with pytest.raises(ValueError, match="target_region"):
        GoalReachEnv(_cfg(region=False))


@pytest.mark.parametrize("algo", ["sac", "tqc"])
def test_her_smoke_run(algo):
    """SAC / TQC with HerReplayBuffer learn 60 steps on the goal env made by its registered id."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import SAC
    from stable_baselines3.her import HerReplayBuffer

    if algo == "tqc":
        Algo = pytest.importorskip("sb3_contrib").TQC
    else:
        Algo = SAC
    env = gym.make(GOAL_ENV_ID, config=_cfg())
    try:
        model = Algo("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer,
                     replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future"},
                     learning_starts=20, batch_size=16, policy_kwargs={"net_arch": [16, 16]},
                     seed=0, device="cpu")
        model.learn(60)
        assert model.replay_buffer.size() > 0
        action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
        assert env.action_space.contains(action.astype(np.float32))
    finally:
        env.close()
