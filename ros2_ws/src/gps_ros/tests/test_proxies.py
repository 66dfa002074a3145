"""Proxy stages (what the coordinator_node runs) against the in-process stages, without ROS.

The transports call the nodes' server-side handlers directly on plain message stand-ins, so a
proxy + handler round trip goes through exactly the conversions and logic the nodes use.
"""
from conftest import sim_limits
import pickle
import threading
import time

import numpy as np
import pytest

from gps_ros.agents import SimAgent
from gps_ros.algorithm import KLConstrainedLQR
from gps_ros.ros import convert, proxies
from gps_ros.ros.convert import PlainTypes as P
from gps_ros.ros.coordinator import build_ros_algorithm, sampler_names
from gps_ros.ros.proxies import (RosDynamicsFitter, RosSampler, RosTrajectoryOptimizer,
                                 TrialJob, dispatch, round_robin)
from gps_ros.ros.trial import TrialRecorder, actor_from_goal, goal_noise, run_lockstep
from gps_ros.ros.validate import Bounds, check_run_trial_goal
from gps_ros.safety import SafetyFilter
from gps_ros.train import build_algorithm, build_fitter


# --- distribution ------------------------------------------------------------------------------
def test_round_robin():
    assert round_robin(5, 2) == [[0, 2, 4], [1, 3]]
    assert round_robin(2, 3) == [[0], [1], []]
    with pytest.raises(ValueError):
        round_robin(3, 0)


def test_sampler_names():
    assert sampler_names(2) == ["/sampler_0/run_trial", "/sampler_1/run_trial"]
    with pytest.raises(ValueError):
        sampler_names(0)


def test_dispatch_is_concurrent_and_ordered():
    active, peak, lock = [0], [0], threading.Lock()

    def worker(tag):
        def run(goal):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.02)
            with lock:
                active[0] -= 1
            return (tag, goal)
        return run

    jobs = [TrialJob(i, f"g{i}") for i in range(6)]
    out = dispatch(jobs, [worker("a"), worker("b"), worker("c")])
    assert [g for _, g in out] == [f"g{i}" for i in range(6)]
    assert peak[0] == 3                                   # all three samplers busy at once
    assert {t for t, _ in out} == {"a", "b", "c"}


def test_dispatch_retries_on_another_sampler_then_fails_clearly():
    def bad(goal):
        raise RuntimeError("robot offline")

    out = dispatch([TrialJob(i, i) for i in range(4)], [bad, lambda g: g * 10])
    assert out == [0, 10, 20, 30]
    with pytest.raises(RuntimeError, match="robot offline"):
        dispatch([TrialJob(0, 0)], [bad])


# --- sampler: RunTrial goals against the in-process agent ---------------------------------------
def agent_transport(agent):
    """A fake RunTrial endpoint: runs the goal on a SimAgent exactly like the sampler would
    (the goal checked against the robot and task first, as the sampler_node does)."""
    lock = threading.Lock()
    bounds = Bounds.for_task(agent.task, agent.dX, agent.cfg.T, agent.task.num_conditions)

    def run(goal):
        check_run_trial_goal(goal, bounds)
        actor, source, T, dU = actor_from_goal(goal)
        noise = goal_noise(goal, T, dU)
        with lock:
            tr = agent.sample(actor, int(goal.condition), noise[None], seeds=[int(goal.noise_seed)],
                              source=source)
        return convert.trial_to_msg(tr.X[0], tr.U[0], tr.meta[0], P.Trajectory(), P)
    return run


@pytest.fixture
def agents(small_cfg):
    a = [SimAgent(small_cfg.agent) for _ in range(2)]
    yield a
    for x in a:
        x.close()


def test_ros_sampler_matches_sim_agent(small_cfg, agents):
    algo = build_algorithm(small_cfg, agents[0])
    ctrl = algo.conditions[1].controller
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((3, ctrl.T, ctrl.dU))
    direct = agents[0].sample(ctrl, 1, noise, seeds=[7, 8, 9])
    sampler = RosSampler([agent_transport(a) for a in agents])
    via = sampler.sample(ctrl, 1, noise, seeds=[7, 8, 9])
    np.testing.assert_allclose(via.X, direct.X, rtol=0, atol=1e-12)
    np.testing.assert_allclose(via.U, direct.U, rtol=0, atol=1e-12)
    assert [m.seed for m in via.meta] == [7, 8, 9]
    assert all(m.condition == 1 and m.source == "controller" for m in via.meta)


def test_ros_sampler_policy_needs_export():
    s = RosSampler([lambda g: g])
    with pytest.raises(ValueError, match="export_policy"):
        s.sample(object(), 0, np.zeros((1, 3, 2)), source="policy")
    ref = proxies.PolicyRef("/tmp/p.pt", np.eye(2), needs_image=True)
    jobs = s.goals(ref, 0, np.zeros((2, 3, 2)), [1, 2], "policy")
    assert jobs[1].goal.policy_checkpoint == "/tmp/p.pt" and jobs[1].goal.record_images
    assert jobs[1].goal.source == P.RunTrialGoal.SOURCE_POLICY


# --- the sampler node's trial logic against the sim -----------------------------------------------
def test_trial_recorder_lockstep_matches_sim_agent(small_cfg, agents):
    algo = build_algorithm(small_cfg, agents[0])
    ctrl = algo.conditions[0].controller
    noise = np.random.default_rng(1).standard_normal((ctrl.T, ctrl.dU))
    direct = agents[0].sample(ctrl, 0, noise[None], seeds=[3])
    goal = convert.run_trial_goal(P.RunTrialGoal(), 0, ctrl.T, noise, 3, controller=ctrl)
    actor, source, T, dU = actor_from_goal(goal)
    filt = SafetyFilter(sim_limits(), mode="effort",
                        control_period=1.0 / small_cfg.agent.control_rate_hz)
    rec = TrialRecorder(actor, 0, T, agents[1].dX, dU, goal_noise(goal, T, dU), filt, seed=3)
    run_lockstep(rec, agents[1].sim, 0)
    msg = rec.result(P.Trajectory(), P)
    X, U, meta, _ = convert.trial_from_msg(msg)
    assert not meta.discarded, meta.reason
    np.testing.assert_allclose(X, direct.X[0], atol=1e-12)
    np.testing.assert_allclose(U, direct.U[0], atol=1e-12)


def test_trial_recorder_discards_on_stop(small_cfg, agents):
    algo = build_algorithm(small_cfg, agents[0])
    ctrl = algo.conditions[0].controller
    filt = SafetyFilter(sim_limits(), control_period=0.05)
    rec = TrialRecorder(ctrl, 0, ctrl.T, agents[0].dX, ctrl.dU, np.zeros((ctrl.T, ctrl.dU)), filt)
    x = agents[0].sim.reset(0)
    from gps_ros.safety import JointStateSample

    js = JointStateSample(x[:7], x[7:14], 0.0)
    u, st = rec.step(x, js, 0.0)
    assert st.ok or st.code == "clamped"
    filt.e_stop("operator")
    u, st = rec.step(x, js, 0.01)
    assert st.stopped and np.all(u == 0)
    u, st = rec.step(x, js, 0.02)
    assert st.stopped and np.all(u == 0)
    rec.abort("cancelled")
    X, U, meta, _ = convert.trial_from_msg(rec.result(P.Trajectory()))
    assert meta.discarded and "t=1" in meta.reason and "e-stop" in meta.reason
    assert X.shape == (ctrl.T, agents[0].dX)


# --- dynamics and LQR via the service handlers ------------------------------------------------------
def test_dynamics_and_lqr_proxies_match_in_process(small_cfg, agents):
    algo = build_algorithm(small_cfg, agents[0])
    rng = np.random.default_rng(2)
    trajs = []
    for m in range(algo.M):
        c = algo.conditions[m].controller
        trajs.append(agents[0].sample(c, m, rng.standard_normal((3, c.T, c.dU))))
    local, remote = build_fitter(small_cfg), build_fitter(small_cfg)
    proxy = RosDynamicsFitter(lambda req: proxies.handle_fit_dynamics(
        remote, req, proxies.plain_service_types().FitDynamicsResponse()))
    for _ in range(2):                                   # the prior's state carries over calls
        d_local, d_remote = local.fit(trajs), proxy.fit(trajs)
        for a, b in zip(d_local, d_remote):
            np.testing.assert_allclose(b.Fm, a.Fm, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(b.dyn_covar, a.dyn_covar, rtol=1e-10, atol=1e-12)

    from gps_ros.control import QuadraticCost

    costs = []
    for tr in trajs:
        d = algo.cost.eval(tr.X, tr.U)
        costs.append(QuadraticCost.from_derivatives(tr.X, tr.U, d))
    prev = [st.controller for st in algo.conditions]
    eps, eta0 = [1.0 * 40] * algo.M, [1.0] * algo.M
    lqr = KLConstrainedLQR(small_cfg.algorithm)
    opt = RosTrajectoryOptimizer(lambda req: proxies.handle_optimize(
        lqr, req, proxies.plain_service_types().OptimizeResponse()))
    a = lqr.optimize(d_local, costs, prev, eps, eta0)
    b = opt.optimize(d_local, costs, prev, eps, eta0)
    for ra, rb in zip(a, b):
        assert rb.eta == pytest.approx(ra.eta) and rb.kl == pytest.approx(ra.kl)
        np.testing.assert_allclose(rb.controller.K, ra.controller.K, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(rb.mu, ra.mu, rtol=1e-9, atol=1e-12)


def test_remote_failure_is_reported():
    class Boom:
        def fit(self, trajs):
            raise np.linalg.LinAlgError("not positive definite")

    proxy = RosDynamicsFitter(lambda req: proxies.handle_fit_dynamics(
        Boom(), req, proxies.plain_service_types().FitDynamicsResponse()))
    from gps_ros.sample import TrialMeta, Trajectories

    tr = Trajectories(np.zeros((1, 3, 2)), np.zeros((1, 3, 1)), [TrialMeta(0)])
    with pytest.raises(proxies.RemoteStageError, match="LinAlgError: not positive definite"):
        proxy.fit([tr])
    opt = RosTrajectoryOptimizer(lambda req: proxies.handle_optimize(
        None, req, proxies.plain_service_types().OptimizeResponse()))
    req_fail = proxies.plain_service_types().OptimizeRequest()
    req_fail.dynamics = [1]
    res = proxies.handle_optimize(None, req_fail, proxies.plain_service_types().OptimizeResponse())
    assert not res.success and "request lists disagree" in res.message
    with pytest.raises(proxies.RemoteStageError, match="optimize_trajectories failed"):
        opt.optimize([], [], [], [], [])                 # the handler gets None as optimizer


# --- the whole loop: same class, proxy stages ------------------------------------------------------
def test_coordinator_loop_matches_in_process(small_cfg, agents):
    """One LQR-FLM iteration through the proxies equals the in-process iteration (same seed)."""
    ref = build_algorithm(small_cfg, agents[0])
    r_ref = ref.run_iteration()

    remote_fitter = build_fitter(small_cfg)
    lqr = KLConstrainedLQR(small_cfg.algorithm)
    st = proxies.plain_service_types()
    T, M = small_cfg.agent.T, len(small_cfg.agent.conditions)      # the nodes' checks
    algo = build_ros_algorithm(
        small_cfg, agents[1].task, [agent_transport(agents[1])],
        fit_dynamics=lambda req: proxies.handle_fit_dynamics(
            remote_fitter, req, st.FitDynamicsResponse(), horizon=T, num_conditions=M),
        optimize=lambda req: proxies.handle_optimize(lqr, req, st.OptimizeResponse(), horizon=T))
    assert type(algo) is type(ref)
    r = algo.run_iteration()
    for a, b in zip(r_ref.samples, r.samples):
        np.testing.assert_allclose(b.X, a.X, atol=1e-12)
    assert r.metrics["cost"] == pytest.approx(r_ref.metrics["cost"], rel=1e-9)
    np.testing.assert_allclose(r.metrics["eta"], r_ref.metrics["eta"], rtol=1e-6)
    for sa, sb in zip(ref.conditions, algo.conditions):
        np.testing.assert_allclose(sb.controller.K, sa.controller.K, rtol=1e-6, atol=1e-9)
    # the proxies pickle into a checkpoint without their transports
    blob = pickle.dumps({"fitter": algo.fitter, "conditions": algo.conditions})
    back = pickle.loads(blob)
    assert back["fitter"].call is None


def test_train_policy_handler_and_stage(small_cfg, agents, tmp_path):
    pytest.importorskip("torch")
    from gps_ros.policy.distill import PolicyTrainer
    from gps_ros.policy.export import export_torchscript
    from gps_ros.policy.global_policy import GlobalPolicy
    from gps_ros.policy.network import NetworkConfig
    from gps_ros.ros.coordinator import joint_indices

    algo = build_algorithm(small_cfg, agents[0])
    lay = agents[0].layout
    jidx = joint_indices(lay)
    trajs = [agents[0].sample(algo.conditions[m].controller, m,
                              np.random.default_rng(m).standard_normal((2, 40, 7)))
             for m in range(algo.M)]
    ctrls = [st.controller for st in algo.conditions]
    net_cfg = NetworkConfig(joint_dim=len(jidx), action_dim=7, use_image=False, hidden=[16])
    policy = GlobalPolicy(PolicyTrainer(net_cfg, iterations=5, batch_size=16, seed=0), jidx)

    def export(pol, d, it):
        p = tmp_path / f"policy_{it:04d}.pt"
        export_torchscript(pol.trainer.net, p)
        return str(p) + ".ckpt", str(p)

    st = proxies.plain_service_types()
    stage = proxies.RosPolicyStage(
        lambda goal: proxies.handle_train_policy(policy, goal, st.TrainResult(), export),
        jidx, str(tmp_path), needs_image=False)
    out = stage.train(trajs, ctrls)
    assert stage.trained and np.isfinite(out["loss_end"])
    np.testing.assert_allclose(stage.covariance(), policy.covariance())
    np.testing.assert_allclose(stage.predict(trajs[0]), policy.predict(trajs[0]), rtol=1e-4, atol=1e-4)
    # policy.linearization: jacobian over ROS: the export's Jacobian is the network's
    J = stage.state_jacobian(trajs[0], lay.dX)
    assert J.shape == (2, 40, 7, lay.dX) and np.abs(J).max() > 0
    np.testing.assert_allclose(J, policy.state_jacobian(trajs[0], lay.dX), rtol=1e-4, atol=1e-5)
    ref = stage.actor()
    assert ref.export_path.endswith("policy_0001.pt")
    # the sampler side: run the export as a RunTrial policy goal
    goal = convert.run_trial_goal(P.RunTrialGoal(), 0, 40, np.zeros((40, 7)), 0,
                                  policy_checkpoint=ref.export_path, policy_chol=ref.chol)
    actor, source, T, dU = actor_from_goal(goal, joint_idx=jidx)
    x = trajs[0].X[0, 5]
    np.testing.assert_allclose(actor.act(5, x, np.zeros(7)), policy.predict(trajs[0])[0, 5],
                               rtol=1e-4, atol=1e-4)


# --- vision MDGPS over the proxies, the samplers writing camera frames to disk ----------------------
def ros_vision_cfg():
    """CI-sized vision MDGPS (as test_mdgps.vision_cfg), 10 distillation steps."""
    from gps_ros.config import parse_config

    from conftest import small_vision_config_dict

    return parse_config(small_vision_config_dict(iterations=10), "test")


def recorder_transport(agent, image_dir, joint_idx, control_rate_hz):
    """A fake RunTrial endpoint running the sampler_node's trial logic (TrialRecorder, lockstep
    against the sim, camera frames) and writing the frames under ``image_dir`` as the node does
    when it has an experiment_dir."""
    lock = threading.Lock()
    bounds = Bounds.for_task(agent.task, agent.dX, agent.cfg.T, agent.task.num_conditions)

    def run(goal):
        check_run_trial_goal(goal, bounds)
        actor, source, T, dU = actor_from_goal(goal, joint_idx=joint_idx)
        filt = SafetyFilter(sim_limits(), mode="effort", control_period=1.0 / control_rate_hz)
        rec = TrialRecorder(actor, int(goal.condition), T, agent.dX, dU, goal_noise(goal, T, dU),
                            filt, seed=int(goal.noise_seed), source=source,
                            record_images=bool(goal.record_images))
        with lock:
            run_lockstep(rec, agent.sim, int(goal.condition),
                         camera=lambda: agent.camera.render(agent.sim))
        return rec.result(P.Trajectory(), P, image_dir=image_dir)
    return run


@pytest.fixture(scope="module")
def ros_vision_run(tmp_path_factory):
    """A ROS-style experiment directory without ROS: the coordinator's loop (build_ros_algorithm +
    train.run, as coordinator_node.run_training) over in-process handlers, the trainer writing
    policy_NNNN.ckpt / .pt (trainer_node.export_policy) into RUN/policy.  Two iterations: the
    second samples the exported policy on-policy and linearises it on the recorded frames."""
    pytest.importorskip("torch")
    from types import SimpleNamespace

    from gps_ros.experiment import Experiment
    from gps_ros.ros.coordinator import joint_indices
    from gps_ros.policy.export import write_policy_checkpoint as trainer_export
    from gps_ros.task import TaskModel
    from gps_ros.train import build_policy, run

    cfg = ros_vision_cfg()
    out = tmp_path_factory.mktemp("ros") / "run"
    agent = SimAgent(cfg.agent)
    try:
        jidx = joint_indices(agent.layout)
        # the trainer_node's policy, built the way the node builds it
        trainer_policy, _ = build_policy(cfg, TaskModel(cfg.agent))
        st = proxies.plain_service_types()
        T, M = cfg.agent.T, len(cfg.agent.conditions)                # the nodes' checks
        goals = []

        def train(goal):
            goals.append(goal)
            return proxies.handle_train_policy(trainer_policy, goal, st.TrainResult(),
                                               trainer_export, horizon=T, num_conditions=M)

        remote_fitter, lqr = build_fitter(cfg), KLConstrainedLQR(cfg.algorithm)
        fit_requests = []

        def fit(req):
            fit_requests.append(req)
            return proxies.handle_fit_dynamics(remote_fitter, req, st.FitDynamicsResponse(),
                                               horizon=T, num_conditions=M)

        image_dir = out / "trials" / "images"
        algo = build_ros_algorithm(
            cfg, agent.task,
            [recorder_transport(agent, image_dir, jidx, cfg.agent.control_rate_hz)],
            fit_dynamics=fit,
            optimize=lambda req: proxies.handle_optimize(lqr, req, st.OptimizeResponse(),
                                                         horizon=T),
            train_policy=train, checkpoint_dir=str(out / "policy"))
        exp = Experiment.create(out, cfg)
        rows = run(exp, algo, 2, progress=False)
    finally:
        agent.close()
    return SimpleNamespace(out=out, rows=rows, algo=algo, goals=goals, fit_requests=fit_requests,
                           trainer_policy=trainer_policy, image_dir=image_dir, cfg=cfg)


def test_coordinator_builds_the_policy_search_the_config_asks_for(agents):
    """The ROS coordinator's MDGPS / BADMM take the policy section's settings as in-process
    (linearization, warm-up and its step sizes, on-policy, BADMM's dual)."""
    pytest.importorskip("torch")
    from gps_ros.algorithm import BADMM
    from gps_ros.config import parse_config

    from conftest import small_vision_config_dict

    def unused(*a):
        raise AssertionError("not called while building")

    d = small_vision_config_dict(warmup_iterations=3, warmup_kl_step=2.0, warmup_max_step_mult=4.0,
                                 on_policy=False)
    algo = build_ros_algorithm(parse_config(d, "test"), agents[0].task, [unused], unused, unused,
                               train_policy=unused)
    assert type(algo).__name__ == "MDGPS" and algo.linearization == "jacobian"
    assert (algo.warmup_iterations, algo.warmup_kl_step, algo.warmup_max_step_mult,
            algo.on_policy) == (3, 2.0, 4.0, False)
    d = small_vision_config_dict(badmm_lambda0=0.5)
    d["algorithm"]["type"] = "badmm"
    algo = build_ros_algorithm(parse_config(d, "test"), agents[0].task, [unused], unused, unused,
                               train_policy=unused)
    assert isinstance(algo, BADMM) and algo.lambdas[0] == 0.5


def test_coordinator_plans_the_lqr_start_as_in_process(agents):
    """init_controller.type lqr over ROS: the coordinator's model of the robot (a TaskModel, no
    simulator, as coordinator_node builds it) gives the very controllers of the in-process
    loop's simulated robot."""
    from gps_ros.config import parse_config
    from gps_ros.task import TaskModel, build_initial_controllers

    from conftest import small_config_dict

    def unused(*a):
        raise AssertionError("not called while building")

    d = small_config_dict()
    d["init_controller"] = {"type": "lqr", "init_var": 2.0}
    cfg = parse_config(d, "test")
    algo = build_ros_algorithm(cfg, TaskModel(cfg.agent), [unused], unused, unused)
    here = build_initial_controllers(cfg, agents[0].task)
    for st, c in zip(algo.conditions, here):
        np.testing.assert_allclose(st.controller.K, c.K, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(st.controller.k, c.k, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(st.controller.pol_covar, c.pol_covar, rtol=1e-9, atol=1e-12)


def test_ros_vision_mdgps_with_images_on_disk(ros_vision_run):
    """MDGPS over ROS with a sampler experiment_dir: the S-step gets the frames from the files."""
    from gps_ros.sample import Trajectories

    r = ros_vision_run
    assert [row["iteration"] for row in r.rows] == [1, 2]
    assert r.algo.linearization == r.cfg.policy.linearization == "jacobian"
    assert all(np.isfinite(row["distill_loss"]) for row in r.rows)
    assert r.algo.policy.trained and r.algo.policy.export_path.endswith("policy_0002.pt")
    # the trainer got paths, not inline frames, and loaded the frames the samplers wrote
    files = sorted(r.image_dir.glob("images_c*.npz"))
    assert len(files) == 2 * 2 * 2                      # iterations * conditions * samples
    for goal in r.goals:
        assert all(len(m.images) == 0 and len(m.image_paths) == 1 for m in goal.trajectories)
    for req in r.fit_requests:                          # dynamics never need the frames
        assert all(len(m.images) == 0 and len(m.image_paths) == 0 for m in req.trajectories)
    tr = Trajectories.load(r.out / "iterations" / "0002" / "trials_c01.npz")
    assert tr.obs["image"].shape == (2, 12, 32, 32, 3) and tr.obs["image"].any()
    assert all(m.source == "policy" for m in tr.meta)  # on-policy: the export ran on the sampler
    with np.load(tr.meta[0].image_paths[0]) as z:
        np.testing.assert_array_equal(z["image"], tr.obs["image"][0])


def test_export_and_eval_of_a_ros_trained_run(ros_vision_run, tmp_path, capsys):
    """``gps-ros export`` / ``eval`` on a run whose state holds a RosPolicyStage: the network is
    rebuilt from the trainer's policy_NNNN.ckpt and checked against its policy_NNNN.pt."""
    from gps_ros.cli import main
    from gps_ros.evaluate import evaluate, export_policy
    from gps_ros.policy.export import load_torchscript
    from gps_ros.sample import Trajectories

    r = ros_vision_run
    path, err = export_policy(r.out, tmp_path / "exported.pt")
    assert path.stat().st_size > 0 and err <= 1e-5
    # the export is the trainer's network (its in-memory policy after the last S-step)
    import torch

    tr = Trajectories.load(r.out / "iterations" / "0002" / "trials_c01.npz")
    module, cfg = load_torchscript(path)
    assert cfg["image_size"] == [32, 32]
    img = torch.as_tensor(tr.obs["image"].reshape(tr.N * tr.T, 32, 32, 3))
    q = torch.as_tensor(tr.X[..., r.algo.policy.joint_idx].reshape(tr.N * tr.T, -1), dtype=torch.float32)
    with torch.no_grad():
        got = module(img, q).double().numpy().reshape(tr.N, tr.T, -1)
    np.testing.assert_allclose(got, r.trainer_policy.predict(tr), rtol=1e-4, atol=1e-4)
    res = evaluate(r.out, 2, seed=5, out=tmp_path / "eval.json")
    assert len(res["final_distance"]) == 2 and res["uses_image"]
    assert (tmp_path / "eval.png").stat().st_size > 0
    # the trainer's checkpoints did not come with the run (trained on another machine)
    (r.out / "policy").rename(r.out / "policy.elsewhere")
    try:
        capsys.readouterr()
        assert main(["export", "--run", str(r.out), "--out", str(tmp_path / "x.pt")]) == 2
        msg = capsys.readouterr().err.strip()
        assert "policy_0002.ckpt" in msg and "\n" not in msg, msg
        assert main(["eval", "--run", str(r.out), "--targets", "1"]) == 2
        assert "policy_0002.ckpt" in capsys.readouterr().err
    finally:
        (r.out / "policy.elsewhere").rename(r.out / "policy")
