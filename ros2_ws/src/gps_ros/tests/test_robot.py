"""The robot as configuration (gps_ros.robot): every shipped robot's model against PyBullet, the
URDF sources, bad robot sections as one config-error line, and reach learned in each command
interface on robots other than the Panda."""
import json
from pathlib import Path

import numpy as np
import pybullet as p
import pytest

from gps_ros.config import ConfigError, load_config
from gps_ros.robot import RobotError, load_description, package_share
from gps_ros.sim.arm import ArmSim

CONFIG = Path(__file__).resolve().parents[1] / "config"
#: the shipped reach configs, one per robot (the UR5 and SO-101 need example-robot-data)
ROBOTS = {"panda": "panda_reach.yaml", "iiwa": "iiwa_reach.yaml", "ur5": "ur5_reach.yaml",
          "so101": "so101_reach.yaml",
          "panda_peg": "panda_peg.yaml"}          # the model includes the peg in the hand (a payload)


def needs_robot_data(name: str):
    if name in ("ur5", "so101") and package_share("example-robot-data") is None:
        pytest.skip("needs the example-robot-data wheel (pip install 'gps_ros[robots]')")


@pytest.fixture(scope="module", params=sorted(ROBOTS))
def sim(request):
    needs_robot_data(request.param)
    s = ArmSim(load_config(CONFIG / ROBOTS[request.param]).agent)
    yield s
    s.close()


def random_poses(sim, n=6, seed=0):
    lo = np.maximum(sim.joint_lower, -np.pi)
    hi = np.minimum(sim.joint_upper, np.pi)
    return np.random.default_rng(seed).uniform(lo, hi, size=(n, sim.dU))


def pybullet_dofs(sim, q):
    """All of PyBullet's movable joints (controlled ones at q, held ones at their positions)."""
    out = [0.0] * len(sim._dofs)
    for j, v in zip(sim._arm, q):
        out[sim._dofs.index(j)] = float(v)
    for j, v in zip(sim._held, sim._held_q):
        out[sim._dofs.index(j)] = v
    return out


def test_model_matches_pybullet_kinematics_and_dynamics(sim):
    """Forward kinematics, the EE points' Jacobian, the joint-space inertia and the gravity torque
    of the Pinocchio model against PyBullet's own functions on the simulated body, at random
    poses within the joint limits.  (PyBullet's link states carry ~1e-8 m of rounding: its
    kinematics are not exact, Pinocchio's agree with an independent numpy chain to 1e-16.)"""
    model, r, c = sim.task.robot, sim.robot, sim.physics_client
    pts = sim.ee_points_local
    arm = [sim._dofs.index(j) for j in sim._arm]
    for q in random_poses(sim):
        sim._set_joints(q)
        qa = pybullet_dofs(sim, q)
        ls = p.getLinkState(r, sim.ee_index, computeForwardKinematics=1, physicsClientId=c)
        pos, R = model.link_pose(q)
        np.testing.assert_allclose(pos, ls[4], atol=1e-7)
        np.testing.assert_allclose(R, np.reshape(p.getMatrixFromQuaternion(ls[5]), (3, 3)), atol=1e-6)
        J = model.point_jacobian(q, pts)
        for i, pt in enumerate(pts):
            lin, _ = p.calculateJacobian(r, sim.ee_index, list(pt), qa, [0.0] * len(qa),
                                         [0.0] * len(qa), physicsClientId=c)
            np.testing.assert_allclose(J[3 * i:3 * i + 3], np.asarray(lin)[:, arm], atol=1e-9)
        M = np.asarray(p.calculateMassMatrix(r, qa, physicsClientId=c))[np.ix_(arm, arm)]
        np.testing.assert_allclose(model.mass_matrix(q), M, rtol=1e-9, atol=1e-10 * np.abs(M).max())
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        g = np.asarray(p.calculateInverseDynamics(r, qa, [0.0] * len(qa), [0.0] * len(qa),
                                                  physicsClientId=c))[arm]
        p.setGravity(0, 0, 0, physicsClientId=c)
        np.testing.assert_allclose(model.gravity(q), g, rtol=1e-8, atol=1e-9 * max(1.0, np.abs(g).max()))


def test_state_from_the_model_is_the_simulators(sim):
    """The state a sampler computes from joint states on a real arm (the model) equals the one the
    simulator measures, at rest and moving (the EE point velocities through the Jacobian)."""
    task = sim.task
    sim.reset(1)
    rng = np.random.default_rng(3)
    for t in range(15):
        x = sim.step(sim.clip_command(sim.hold_command() + 0.3 * rng.standard_normal(sim.dU)
                                      * (sim.torque_limits / 10 if sim.command == "effort" else 1)))
    lay = task.layout
    y = task.state(x[lay.joint_pos], x[lay.joint_vel], 1)
    np.testing.assert_allclose(y[lay.ee_points], x[lay.ee_points], atol=1e-7)
    np.testing.assert_allclose(y[lay.ee_vel], x[lay.ee_vel], atol=1e-6 * max(1.0, np.abs(x[lay.ee_vel]).max()))


def test_command_interfaces_hold_and_move(sim):
    """The hold command keeps the arm where it is; a command moves the joints as the interface
    says (velocity: about dt u; position: to u within the period)."""
    x0 = sim.reset(0)
    lay = sim.layout
    for _ in range(10):
        x = sim.step(sim.hold_command())
    assert np.abs(x[lay.joint_pos] - x0[lay.joint_pos]).max() < 1e-3
    if sim.command == "velocity":
        u = np.full(sim.dU, 0.2)
        x1 = sim.step(u)
        np.testing.assert_allclose(x1[lay.joint_pos] - x[lay.joint_pos], sim.dt * u, rtol=0.1)
        np.testing.assert_allclose(x1[lay.joint_vel], u, atol=1e-3)
    elif sim.command == "position":
        u = x[lay.joint_pos] + 0.05
        x1 = sim.step(u)
        np.testing.assert_allclose(x1[lay.joint_pos], u, atol=5e-3)
        np.testing.assert_allclose(x1[lay.joint_vel], 0.05 / sim.dt, rtol=0.1)


# --- where a URDF comes from --------------------------------------------------------------------------
def test_urdf_sources(tmp_path):
    import pybullet_data

    data = Path(pybullet_data.getDataPath())
    inside = load_description("kuka_iiwa/model.urdf", "lbr_iiwa_link_7")           # pybullet_data
    absolute = load_description(str(data / "kuka_iiwa" / "model.urdf"), "lbr_iiwa_link_7")
    text = load_description((data / "kuka_iiwa" / "model.urdf").read_text(), "lbr_iiwa_link_7")
    (tmp_path / "cfg").mkdir()
    relative = load_description("../model.urdf", "lbr_iiwa_link_7", base_dir=tmp_path / "cfg") \
        if (tmp_path / "model.urdf").write_text((data / "kuka_iiwa" / "model.urdf").read_text()) else None
    for d in (inside, absolute, text, relative):
        assert d.joints == tuple(f"lbr_iiwa_joint_{i}" for i in range(1, 8))     # the chain's default
    assert not inside.missing_meshes and str(data / "kuka_iiwa" / "meshes") in inside.urdf
    assert text.missing_meshes          # URDF text names meshes relative to a file it has not
    assert relative.missing_meshes      # the copy lies where its meshes do not


def test_package_uri_through_the_ament_index():
    needs_robot_data("ur5")
    d = load_description("package://example-robot-data/robots/ur_description/urdf/ur5_robot.urdf",
                         "tool0", "base_link")
    assert not d.missing_meshes and "package://" not in d.urdf
    with pytest.raises(RobotError, match="package 'no_such_pkg' is not in the ament index"):
        load_description("package://no_such_pkg/robot.urdf", "tool0")


# --- bad robot sections: one line naming the key, nothing started --------------------------------------
def _write(tmp_path, mutate):
    import yaml

    data = yaml.safe_load((CONFIG / "iiwa_reach.yaml").read_text())
    mutate(data["agent"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _robot(**kw):
    return lambda a: a["robot"].update(kw)


@pytest.mark.parametrize("mutate, key, words", [
    (_robot(urdf="no/such/robot.urdf"), "agent.robot.urdf", "no such file"),
    (_robot(urdf="<robot name='x'><link name='a'>"), "agent.robot.urdf", "not valid XML"),
    (_robot(urdf="package://no_such_pkg/r.urdf"), "agent.robot.urdf", "not in the ament index"),
    (_robot(ee_link="hand"), "agent.robot.ee_link", "link 'hand' is not in"),
    (_robot(base_link="lbr_iiwa_link_3"), "agent.robot.base_link", "moves relative to the URDF root"),
    (_robot(joints=["lbr_iiwa_joint_1", "elbow"]), "agent.robot.joints", "joint 'elbow' is not in"),
    (_robot(command="torque"), "agent.robot.command", "Input should be"),
    (lambda a: a.update(start_joint_positions=[0.0] * 6), "agent.start_joint_positions",
     "needs 7 values"),
    (lambda a: a.update(start_joint_positions=[0.0, 2.5, 0, 0, 0, 0, 0]), "agent.start_joint_positions",
     "lbr_iiwa_joint_2 = 2.5 is outside its limits"),
    (lambda a: a["conditions"][1].update(target=[1.5, 0.0, 0.5]), "agent.conditions[1].target",
     "beyond its reach"),
    (lambda a: a.update(held_joints={"lbr_iiwa_joint_7": 0.0}), "agent.held_joints",
     "is a controlled joint"),
])
def test_bad_robot_sections_are_one_line(tmp_path, mutate, key, words):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"config error in {path}: {key}") and words in msg, msg


def test_bad_robot_section_starts_nothing(tmp_path, capsys):
    from gps_ros.cli import main

    path = _write(tmp_path, _robot(ee_link="hand"))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "agent.robot.ee_link" in err[0], err
    assert not (tmp_path / "out").exists()


# --- reach on robots other than the Panda, one per command interface ------------------------------------
@pytest.mark.parametrize("robot, command", [("iiwa", "effort"), ("ur5", "velocity"), ("so101", "position")])
def test_shipped_robot_learns_reach_in_its_command_mode(tmp_path, robot, command):
    """The shipped reach config of each non-Panda robot as it is (4 targets, 1 trial per target
    per iteration, no setting tuned for the robot): every target < 2 cm after 3 iterations (12
    trials; seeds 0-2 in the README take 3 iterations on every robot and seed)."""
    from gps_ros.cli import main

    needs_robot_data(robot)
    cfg = CONFIG / ROBOTS[robot]
    assert load_config(cfg).agent.robot.command == command
    out = tmp_path / robot
    assert main(["train", "--config", str(cfg), "--seed", "1", "--iterations", "3", "--out", str(out),
                 "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    worst = [max(r["final_distance"]) for r in rows]
    assert worst[0] > 0.02                   # the first trials do not reach yet
    assert worst[-1] < 0.02, worst


@pytest.mark.parametrize("robot", ["iiwa", "ur5", "so101"])
def test_gymnasium_env_acts_in_the_robots_command_units(robot):
    """The env's action space is the command interface's (torques within the effort limits,
    velocities within the velocity limits, positions within the joint limits); holding the arm
    costs nothing but the distance."""
    from gps_ros.sim.gym_env import ReachEnv

    needs_robot_data(robot)
    env = ReachEnv(str(CONFIG / ROBOTS[robot]))
    try:
        sim = env.sim
        lo, hi = env.action_space.low, env.action_space.high
        want = {"effort": sim.torque_limits, "velocity": sim.velocity_limits}.get(sim.command)
        if want is not None:
            np.testing.assert_allclose(hi, want, rtol=1e-6)
            np.testing.assert_allclose(lo, -want, rtol=1e-6)
        else:
            np.testing.assert_allclose(lo, np.maximum(sim.joint_lower, -2 * np.pi), rtol=1e-6)
        x, info = env.reset(seed=0, options={"condition": 0})
        assert x.shape == (sim.dX,)
        def distance_penalty(d):
            return 0.5 * env.l2 * d * d + env.l1 * np.sqrt(env.alpha + d * d)

        _, r_hold, _, _, info = env.step(sim.hold_command().astype(np.float32))
        assert r_hold == pytest.approx(-distance_penalty(info["distance"]), rel=1e-6, abs=1e-6)
        _, r_push, _, _, info = env.step(hi.astype(np.float32))      # a full command is penalised
        assert r_push + distance_penalty(info["distance"]) < -1e-3
    finally:
        env.close()


def test_links_without_inertial_are_massless_in_the_simulator():
    """A link with no <inertial> (a tool frame) is massless in the URDF specification and the
    model; PyBullet would give it 1 kg: the simulator writes the zero mass in, so the simulated
    arm is the model's."""
    from gps_ros.config import parse_config

    urdf = """<robot name="two"><link name="base"><inertial><mass value="1"/><inertia ixx="0.01"
      ixy="0" ixz="0" iyy="0.01" iyz="0" izz="0.01"/></inertial></link>
      <link name="arm"><inertial><origin xyz="0.2 0 0"/><mass value="2"/><inertia ixx="0.01" ixy="0"
      ixz="0" iyy="0.02" iyz="0" izz="0.02"/></inertial></link><link name="tool"/>
      <joint name="j1" type="revolute"><parent link="base"/><child link="arm"/><axis xyz="0 0 1"/>
      <limit lower="-3" upper="3" effort="10" velocity="2"/></joint>
      <joint name="t" type="fixed"><parent link="arm"/><child link="tool"/><origin xyz="0.4 0 0"/></joint>
      </robot>"""
    agent = {"robot": {"urdf": urdf, "ee_link": "tool"}, "start_joint_positions": [0.0],
             "conditions": [{"target": [0.0, 0.4, 0.0]}], "ee_points": [[0, 0, 0]]}
    sim = ArmSim(parse_config({"agent": agent}, "test").agent)
    try:
        r, c = sim.robot, sim.physics_client
        assert p.getDynamicsInfo(r, sim.ee_index, physicsClientId=c)[0] == 0.0
        M = np.asarray(p.calculateMassMatrix(r, [0.5], physicsClientId=c))
        np.testing.assert_allclose(sim.mass_matrix([0.5]), M, rtol=1e-12)
        np.testing.assert_allclose(M, [[0.02 + 2 * 0.2 ** 2]], rtol=1e-9)    # no 1 kg at the tool
    finally:
        sim.close()


def test_mdgps_network_commands_the_velocity_interface():
    """MDGPS on the UR5 under velocity control, CI-sized (2 targets, T = 40, a state network): the
    network's outputs are joint velocity commands, and the network itself (run noiselessly, not
    the local controllers) ends within 5 cm of both targets after 12 iterations. Measured over seeds
    0-4 x torch threads 1-2 on an AMD EPYC: 17.8-22.0 cm after the first iteration, 0.9-3.3 cm after
    the 12th (after the 8th it was still 3.6-12.5 cm: one CPU's draw passed 5 cm there, another's
    did not)."""
    pytest.importorskip("torch")
    import yaml

    from gps_ros.agents.sim import SimAgent
    from gps_ros.config import parse_config
    from gps_ros.train import build_algorithm

    needs_robot_data("ur5")
    d = yaml.safe_load((CONFIG / ROBOTS["ur5"]).read_text())
    d["agent"].update(T=40, conditions=d["agent"]["conditions"][:2])
    d["algorithm"].update(type="mdgps", samples_per_condition=2, kl_step=0.5, max_step_mult=1.0)
    d["policy"] = {"use_image": False, "state_inputs": "full", "on_policy": False,
                   "iterations": 300, "hidden": [64, 64], "linearization": "jacobian"}
    d["init_controller"]["type"] = "pd_hold"
    cfg = parse_config(d, "test")
    with SimAgent(cfg.agent) as agent:
        algo = build_algorithm(cfg, agent)
        first = None
        for _ in range(12):
            algo.run_iteration()
            trials = [agent.sample(algo.policy.actor(), m, None) for m in range(2)]
            dist = [float(agent.sim.ee_distance(tr.X[0, -1])) for tr in trials]
            first = first or dist
    u = np.concatenate([tr.U[0] for tr in trials])
    assert np.abs(u).max() <= agent.sim.velocity_limits.max()       # rad/s, within the limits
    assert max(dist) < 0.05 and max(dist) < 0.5 * max(first), (first, dist)
