"""The launch files' decisions (gps_ros.launch_plan), without ROS: what runs, with which
parameters and remappings."""
from pathlib import Path

import pytest
import yaml

from gps_ros.config import dump_config, load_config
from gps_ros.launch_plan import (LOCALHOST_XML, LaunchArgumentError, deploy_plan,
                                 describe_discovery, node_params_from_file, run_config_of,
                                 sim_plan, train_plan, view_plan)

PKG = Path(__file__).resolve().parents[1]
SHARE = str(PKG)
REACH = str(PKG / "config" / "panda_reach.yaml")
VISION = str(PKG / "config" / "panda_vision.yaml")


def by_exe(specs, exe):
    return [s for s in specs if s.executable == exe]


def all_params(spec):
    out = {}
    for p in spec.parameters:
        if isinstance(p, dict):
            out.update(p)
        else:
            out.update(node_params_from_file(p, spec.name))
    return out


def test_hardware_mode_remaps_commands_without_controller_argument(tmp_path):
    """use_sim:=false without controller:= used to leave the commands on /sampler_0/... where no
    robot listens: the arm never moved and training 'completed'."""
    franka = f"{SHARE}/config/ros/franka_effort.yaml"
    specs = train_plan(SHARE, REACH, use_sim="false", sampler_params=franka, cwd=str(tmp_path))
    (s,) = by_exe(specs, "sampler_node")
    assert ("effort_controller/commands", "/effort_controller/commands") in s.remappings
    assert ("joint_states", "/joint_states") in s.remappings
    assert all_params(s)["controller"] == "effort_controller"
    # the UR example names another controller: that one is remapped
    ur = f"{SHARE}/config/ros/ur_velocity.yaml"
    (s,) = by_exe(train_plan(SHARE, REACH, use_sim="false", sampler_params=ur, cwd=str(tmp_path)),
                  "sampler_node")
    assert ("forward_velocity_controller/commands", "/forward_velocity_controller/commands") in s.remappings
    # an explicit argument wins, under the robot namespace
    (s,) = by_exe(train_plan(SHARE, REACH, use_sim="false", controller="my_ctrl", namespace="arm",
                             cwd=str(tmp_path)), "sampler_node")
    assert ("my_ctrl/commands", "/arm/my_ctrl/commands") in s.remappings
    assert s.namespace == "arm/sampler_0"


def test_samplers_read_robot_description_in_the_robots_namespace(tmp_path):
    """agent.robot.urdf robot_description: each sampler reads the topic where the robot's
    robot_state_publisher publishes it (and the learner's nodes read it), not under sampler_i."""
    for ns, topic in (("", "/robot_description"), ("arm", "/arm/robot_description")):
        for kw in ({"use_sim": "false"}, {"sim_mode": "embedded"}, {"sim_mode": "lockstep"}):
            specs = train_plan(SHARE, REACH, namespace=ns, num_samplers="2", cwd=str(tmp_path), **kw)
            for s in by_exe(specs, "sampler_node"):
                assert ("robot_description", topic) in s.remappings, (ns, kw)
            (c,) = by_exe(specs, "coordinator_node")
            assert c.namespace == ns                    # relative robot_description: the same topic


def test_no_node_uses_sim_time_without_a_clock(tmp_path):
    for mode in ("embedded", "lockstep"):
        specs = train_plan(SHARE, REACH, num_samplers="2", sim_mode=mode, cwd=str(tmp_path))
        assert not any(all_params(s).get("use_sim_time") for s in specs)
        assert not any(all_params(s).get("publish_clock") for s in specs)
    (sim,) = sim_plan(SHARE, REACH, use_sim_time="true", tf="false")
    assert all_params(sim)["publish_clock"] is True
    assert not all_params(sim).get("use_sim_time")     # its own stamps are its sim time


def test_train_plan_sim_modes_and_samplers(tmp_path):
    specs = train_plan(SHARE, REACH, num_samplers="2", cwd=str(tmp_path))
    assert not by_exe(specs, "sim_node")
    assert {all_params(s)["state_source"] for s in by_exe(specs, "sampler_node")} == {"embedded_sim"}
    (coord,) = by_exe(specs, "coordinator_node")
    assert coord.role == "coordinator"
    assert coord.param("samplers") == ["/sampler_0/run_trial", "/sampler_1/run_trial"]
    assert not by_exe(specs, "trainer_node")                      # LQR-FLM: no trainer
    specs = train_plan(SHARE, REACH, num_samplers="2", sim_mode="lockstep", cwd=str(tmp_path))
    sims = by_exe(specs, "sim_node")
    assert [s.namespace for s in sims] == ["sampler_0", "sampler_1"]
    assert {all_params(s)["state_source"] for s in by_exe(specs, "sampler_node")} == {"gps_state"}


def test_mdgps_config_starts_the_trainer(tmp_path):
    specs = train_plan(SHARE, VISION, cwd=str(tmp_path))
    assert by_exe(specs, "trainer_node")
    with pytest.raises(LaunchArgumentError, match="train_policy"):
        train_plan(SHARE, VISION, train_policy="false", cwd=str(tmp_path))


def test_experiment_dir_is_absolute_and_shared(tmp_path):
    specs = train_plan(SHARE, REACH, experiment_dir="runs/a", cwd=str(tmp_path))
    dirs = {s.param("experiment_dir") for s in specs if s.param("experiment_dir") is not None}
    assert dirs == {str(tmp_path / "runs" / "a")}
    default = by_exe(train_plan(SHARE, REACH, cwd=str(tmp_path)), "coordinator_node")[0]
    assert default.param("experiment_dir").startswith(str(tmp_path / "runs" / "panda_reach"))


def test_one_host_launches_keep_discovery_on_the_host(tmp_path):
    """Every node of a one-host launch gets LOCALHOST and, without a Cyclone config of the user's,
    the shipped loopback-only one (the file exists and names the loopback interface)."""
    lo = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "CYCLONEDDS_URI": f"file://{SHARE}/{LOCALHOST_XML}"}
    ck = tmp_path / "policy.pt"
    ck.write_bytes(b"")
    plans = [train_plan(SHARE, REACH, cwd=str(tmp_path), environ={}, num_samplers="2"),
             train_plan(SHARE, REACH, cwd=str(tmp_path), environ={}, sim_mode="lockstep"),
             train_plan(SHARE, REACH, cwd=str(tmp_path), environ={}, use_sim="false"),
             deploy_plan(SHARE, str(ck), config=REACH, environ={}),
             sim_plan(SHARE, REACH, environ={})]
    for specs in plans:
        assert len(specs) >= 1 and all(s.env == lo for s in specs)
        assert "LOCALHOST, Cyclone DDS on loopback only" in describe_discovery(specs, environ={})
    xml = (PKG / LOCALHOST_XML).read_text()
    assert '<NetworkInterface name="lo"/>' in xml and "<AllowMulticast>false" in xml
    # a Cyclone config of the user's decides the interfaces: only the range is added
    (s,) = sim_plan(SHARE, REACH, environ={"CYCLONEDDS_URI": "file:///my.xml"}, tf="false")
    assert s.env == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert "the interfaces of CYCLONEDDS_URI" in describe_discovery([s], environ={"CYCLONEDDS_URI": "x"})


def test_several_hosts_and_explicit_choices_open_discovery(tmp_path):
    subnet = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    for role in ("learner", "samplers"):
        specs = train_plan(SHARE, REACH, cwd=str(tmp_path), environ={}, role=role)
        assert specs and all(s.env == subnet for s in specs)
        assert describe_discovery(specs, environ={}).startswith("discovery: SUBNET: other hosts")
    (s,) = sim_plan(SHARE, REACH, environ={}, discovery="subnet", tf="false")
    assert s.env == subnet
    specs = train_plan(SHARE, REACH, cwd=str(tmp_path), environ={}, role="learner",
                       discovery="localhost")
    assert all(s.env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" for s in specs)
    # auto: a range the user exported wins, nothing is added
    user = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    (s,) = sim_plan(SHARE, REACH, environ=user, tf="false")
    assert s.env == {} and "SUBNET" in describe_discovery([s], environ=user)
    assert "SUBNET (ROS 2's default)" in describe_discovery([s], environ={})
    with pytest.raises(LaunchArgumentError, match="discovery:='lan' must be one of auto, localhost"):
        sim_plan(SHARE, REACH, discovery="lan")


@pytest.mark.parametrize("kw,match", [({"num_samplers": "0"}, "num_samplers"),
                                      ({"num_samplers": "two"}, "num_samplers"),
                                      ({"use_sim": "maybe"}, "use_sim"),
                                      ({"sim_mode": "fast"}, "sim_mode"),
                                      ({"sampler_params": "/nope.yaml"}, "nope.yaml")])
def test_bad_launch_arguments_are_one_line_errors(kw, match, tmp_path):
    with pytest.raises(LaunchArgumentError, match=match):
        train_plan(SHARE, REACH, cwd=str(tmp_path), **kw)


def test_deploy_finds_the_run_config(tmp_path):
    """Without config:= the sim had no camera: a vision policy got NaN and held forever."""
    run = tmp_path / "run"
    (run / "policy").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(load_config(REACH)))   # as a run writes it
    for ck in (run / "policy.pt", run / "policy" / "policy_0003.pt"):
        ck.write_bytes(b"")
        assert run_config_of(str(ck)) == str(run / "config.yaml")
        sim, rsp, pol = deploy_plan(SHARE, str(ck))
        assert rsp.executable == "robot_state_publisher"
        assert sim.param("config") == str(run / "config.yaml")
        assert sim.param("lockstep") is False
        assert pol.param("checkpoint") == str(ck)
        assert pol.param("controller") == sim.param("controller") == "effort_controller"
    lone = tmp_path / "lone.pt"
    lone.write_bytes(b"")
    with pytest.raises(LaunchArgumentError, match="config:="):
        deploy_plan(SHARE, str(lone))
    assert [s.executable for s in deploy_plan(SHARE, str(lone), use_sim="false")] == ["policy_node"]
    assert deploy_plan(SHARE, str(lone), config=REACH)[0].param("config") == REACH
    with pytest.raises(LaunchArgumentError, match="no such file"):
        deploy_plan(SHARE, str(tmp_path / "missing.pt"))


def test_node_params_from_file_matches_namespaced_keys(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"/**/sampler_node": {"ros__parameters": {"controller": "a", "x": 1}},
                                 "sampler_node": {"ros__parameters": {"controller": "b"}}}))
    assert node_params_from_file(str(f), "sampler_node") == {"controller": "b", "x": 1}
    assert node_params_from_file(str(f), "policy_node") == {}


# --- SROS2: enclaves, the shipped policy, keystore checks ----------------------------------------
POLICY = PKG / "config" / "ros" / "sros2_policy.xml"


def policy_grants():
    """{enclave: {(kind, permission, name)}} of the shipped policy, e.g.
    ("topics", "publish", "/*commands")."""
    import xml.etree.ElementTree as ET

    out = {}
    for enc in ET.parse(POLICY).getroot().iter("enclave"):
        grants = out.setdefault(enc.get("path"), set())
        for group in enc.iter():
            if group.tag in ("topics", "services", "actions"):
                for perm, value in group.attrib.items():
                    assert value == "ALLOW", (enc.get("path"), group.tag, perm)
                    grants.update((group.tag, perm, item.text) for item in group)
    return out


def holders(grants, kind, perm, name):
    return {enc.rsplit("/", 1)[1] for enc, g in grants.items() if (kind, perm, name) in g}


def test_every_node_of_every_launch_has_an_enclave_in_the_policy(tmp_path):
    from gps_ros.security import policy_enclaves

    ck = tmp_path / "policy.pt"
    ck.write_bytes(b"")
    specs = (train_plan(SHARE, VISION, cwd=str(tmp_path), environ={}, sim_mode="lockstep")
             + deploy_plan(SHARE, str(ck), config=REACH, environ={}) + sim_plan(SHARE, REACH, environ={})
             + view_plan(SHARE, REACH, out_dir=str(tmp_path / "view"), environ={}))
    enclaves = set(policy_enclaves(POLICY))
    assert {s.executable for s in specs} == {"sim_node", "sampler_node", "dynamics_node",
                                             "trajopt_node", "trainer_node", "coordinator_node",
                                             "policy_node", "robot_state_publisher", "rviz2"}
    assert {s.enclave for s in specs} | {"/gps_ros/operator", "/gps_ros/viewer"} == enclaves


def test_the_policy_lets_only_the_right_enclaves_move_the_arm():
    """Who may command, start trials, enable the policy, press or clear the e-stop, fit or train:
    the table a reviewer checks the policy against."""
    g = policy_grants()
    assert holders(g, "topics", "publish", "/*commands") == {"sampler_node", "policy_node"}
    assert holders(g, "topics", "subscribe", "/*commands") == {"sim_node"}
    assert holders(g, "actions", "call", "/*run_trial") == {"coordinator_node"}
    assert holders(g, "actions", "execute", "/*run_trial") == {"sampler_node"}
    assert holders(g, "actions", "call", "/*train_policy") == {"coordinator_node"}
    assert holders(g, "services", "request", "/*policy_node/enable") == {"operator"}
    assert holders(g, "services", "request", "/*reset_e_stop") == {"operator"}
    assert holders(g, "services", "request", "/*coordinator_node/continue") == {"operator"}
    assert holders(g, "topics", "publish", "/*e_stop") == {"operator"}
    assert holders(g, "services", "request", "/*reset") == {"sampler_node"}
    assert holders(g, "services", "request", "/*fit_dynamics") == {"coordinator_node"}
    # ros2_control: only the sampler switches controllers and sends reset trajectories
    assert holders(g, "services", "request", "/*controller_manager/switch_controller") == {
        "sampler_node"}
    assert holders(g, "actions", "call", "/*follow_joint_trajectory") == {"sampler_node"}
    assert holders(g, "topics", "publish", "/*coordinator_node/markers") == {"coordinator_node"}
    # the viewer only reads; nobody but the sampler and the policy publishes on any commands topic
    assert {(k, p) for k, p, _ in g["/gps_ros/viewer"]} == {
        ("topics", "publish"), ("topics", "subscribe"), ("services", "reply")}
    assert {n for k, p, n in g["/gps_ros/viewer"] if p == "publish"} == {"/rosout", "/parameter_events"}
    for enc, grants in g.items():
        for kind, perm, name in grants:
            if perm in ("publish", "request", "call") and name in ("/*", "*"):
                raise AssertionError(f"{enc} may {perm} on every {kind}")


def fake_keystore(root, enclaves):
    from gps_ros.security import ENCLAVE_FILES

    for e in enclaves:
        d = root / "enclaves" / e.strip("/")
        d.mkdir(parents=True)
        for f in ENCLAVE_FILES:
            (d / f).write_text("x")
    return root


def test_keystore_argument_secures_every_node_or_says_what_is_missing(tmp_path):
    from gps_ros.security import policy_enclaves

    ks = fake_keystore(tmp_path / "ks", policy_enclaves(POLICY))
    specs = train_plan(SHARE, REACH, cwd=str(tmp_path), environ={}, keystore=str(ks),
                       sim_mode="lockstep")
    for s in specs:
        assert s.env["ROS_SECURITY_KEYSTORE"] == str(ks.resolve())
        assert s.env["ROS_SECURITY_ENABLE"] == "true" and s.env["ROS_SECURITY_STRATEGY"] == "Enforce"
        assert s.env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    from gps_ros.launch_plan import describe_security

    assert describe_security(specs, environ={}).startswith("security: SROS2 Enforce, keystore")
    assert describe_security(sim_plan(SHARE, REACH, environ={}), environ={}).startswith("security: off")
    with pytest.raises(LaunchArgumentError, match=r"keystore:=.*does not exist: create it with "
                                                  r"`ros2 run gps_ros create_keystore"):
        sim_plan(SHARE, REACH, environ={}, keystore=str(tmp_path / "nope"))
    partial = fake_keystore(tmp_path / "partial", ["/gps_ros/sampler_node"])
    with pytest.raises(LaunchArgumentError, match="has no enclave /gps_ros/robot_state_publisher, "
                                                  "/gps_ros/sim_node"):
        sim_plan(SHARE, REACH, environ={}, keystore=str(partial))
    # secured from the environment: checked the same way
    env = {"ROS_SECURITY_ENABLE": "true", "ROS_SECURITY_KEYSTORE": str(partial)}
    with pytest.raises(LaunchArgumentError, match="security from the environment: .*sim_node"):
        sim_plan(SHARE, REACH, environ=env)
    with pytest.raises(LaunchArgumentError, match="without ROS_SECURITY_KEYSTORE"):
        sim_plan(SHARE, REACH, environ={"ROS_SECURITY_ENABLE": "true"})
    assert sim_plan(SHARE, REACH, environ={**env, "ROS_SECURITY_KEYSTORE": str(ks)},
                    tf="false")[0].env == {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "CYCLONEDDS_URI": f"file://{SHARE}/{LOCALHOST_XML}"}


def test_the_sim_launch_publishes_the_arms_tf(tmp_path):
    sim, rsp = sim_plan(SHARE, REACH, environ={}, namespace="arm")
    assert (rsp.package, rsp.executable, rsp.namespace) == ("robot_state_publisher",
                                                            "robot_state_publisher", "arm")
    p = rsp.parameters[0]
    assert p["frame_prefix"] == "arm/" and "<robot" in p["robot_description"]
    assert rsp.enclave == "/gps_ros/robot_state_publisher" and rsp.env == sim.env
    (_, rsp) = sim_plan(SHARE, REACH, environ={})
    assert rsp.parameters[0]["frame_prefix"] == ""
    # viewers load meshes by URI: every mesh of the Panda as file://<absolute path>
    import re

    meshes = re.findall(r'<mesh\b[^>]*filename="([^"]+)"', rsp.parameters[0]["robot_description"])
    assert meshes and all(m.startswith("file:///") and Path(m[7:]).is_file() for m in meshes)
    assert not rsp.note
    # a URDF the launch's Python cannot read: the sim runs without TF
    from gps_ros.launch_plan import _load, state_publisher

    cfg = _load(REACH)
    cfg.agent.robot.urdf = "package://no_such_package/robot.urdf"
    spec, line = state_publisher(cfg, "")
    assert spec is None and line.startswith("no TF: the URDF is not readable here")
    # meshes the launch's Python cannot find: the log says so beside the node
    from gps_ros.launch_plan import describe

    cfg = _load(REACH)
    monkey_urdf = Path(tmp_path / "arm.urdf")
    from gps_ros.task import robot_description

    text = robot_description(cfg.agent).urdf
    monkey_urdf.write_text(re.sub(r'filename="[^"]+"', 'filename="nowhere/link.obj"', text))
    cfg.agent.robot.urdf = str(monkey_urdf)
    spec, _ = state_publisher(cfg, "")
    assert "meshes of the URDF are not found" in spec.note and spec.note in describe([spec])


def test_create_keystore_says_what_it_needs(tmp_path, monkeypatch, capsys):
    from gps_ros import security

    monkeypatch.setenv("PATH", str(tmp_path))               # no ros2 here
    assert security.main([str(tmp_path / "ks"), "--policy", str(POLICY)]) == 2
    assert "ros2 command is not on PATH" in capsys.readouterr().err
    assert security.main([str(tmp_path / "ks"), "--policy", str(tmp_path / "no.xml")]) == 2
    assert "no policy file" in capsys.readouterr().err


def test_a_simulated_training_shows_its_first_arm_under_the_markers(tmp_path):
    """train.launch.py (one host, simulated) runs robot_state_publisher on sampler_0's joint
    states with unprefixed frames -- the frames the coordinator's markers are in -- and
    publishes the URDF where the viewer configs look for it; not with tf:=false, on a real robot
    (its own robot_state_publisher) or on a host of several."""
    from gps_ros.live_view import DESCRIPTION_TOPIC

    for mode in ("embedded", "lockstep"):
        specs = train_plan(SHARE, REACH, num_samplers="2", sim_mode=mode, cwd=str(tmp_path),
                           environ={})
        (rsp,) = by_exe(specs, "robot_state_publisher")
        assert rsp.namespace == "sampler_0" and rsp.parameters[0]["frame_prefix"] == ""
        assert f"/{rsp.namespace}/robot_description" == DESCRIPTION_TOPIC
        assert rsp.enclave == "/gps_ros/robot_state_publisher"
    assert not by_exe(train_plan(SHARE, REACH, tf="false", cwd=str(tmp_path), environ={}),
                      "robot_state_publisher")
    assert not by_exe(train_plan(SHARE, REACH, use_sim="false", cwd=str(tmp_path), environ={}),
                      "robot_state_publisher")
    assert not by_exe(train_plan(SHARE, REACH, role="samplers", cwd=str(tmp_path), environ={}),
                      "robot_state_publisher")


def test_the_view_launch_runs_rviz2_as_a_viewer_on_the_configs_robot(tmp_path):
    ur5 = str(PKG / "config" / "ur5_reach.yaml")
    (rviz,) = view_plan(SHARE, ur5, out_dir=str(tmp_path), environ={})
    assert (rviz.package, rviz.executable, rviz.name) == ("rviz2", "rviz2", "viewer")
    assert rviz.arguments == ["-d", str(tmp_path / "gps_ros.rviz")]
    assert rviz.enclave == "/gps_ros/viewer"
    assert rviz.env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"    # sees a default training
    cfg = yaml.safe_load((tmp_path / "gps_ros.rviz").read_text())
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == "base_link"
    assert (tmp_path / "foxglove_layout.json").is_file()
