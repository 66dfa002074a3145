"""ros2_control's mock hardware for any shipped arm (gps_ros.robot.ros2_control) and its launch
plan, without ROS: the <ros2_control> tag, the controller_manager's parameters, the controller
checks the sampler makes, what ros2_control_mock.launch.py starts."""
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from gps_ros.config import load_config
from gps_ros.launch_plan import LaunchArgumentError, mock_robot_plan, train_plan
from gps_ros.reset import start_pose
from gps_ros.robot.ros2_control import (Ros2ControlError, controller_for, controller_params,
                                        controller_problem, mock_hardware_urdf,
                                        trajectory_duration)
from gps_ros.task import robot_description

PKG = Path(__file__).resolve().parents[1]
SHARE = str(PKG)


def config(name):
    path = PKG / "config" / f"{name}_reach.yaml"
    try:
        desc = robot_description(load_config(path).agent)
    except (ImportError, FileNotFoundError, ValueError) as err:   # example-robot-data absent
        pytest.skip(str(err))
    return str(path), desc


@pytest.mark.parametrize("robot", ["so101", "ur5", "panda"])
def test_the_mock_system_covers_every_joint_from_its_start_pose(robot):
    path, desc = config(robot)
    q0 = start_pose(load_config(path).agent, 0)
    root = ET.fromstring(mock_hardware_urdf(desc.urdf, desc.joints, q0))
    (rc,) = root.findall("ros2_control")
    assert rc.find("hardware/plugin").text == "mock_components/GenericSystem"
    assert rc.find("hardware/param[@name='calculate_dynamics']").text == "true"
    joints = rc.findall("joint")
    assert [j.get("name") for j in joints] == list(desc.joints)
    for j, q in zip(joints, q0):
        assert [c.get("name") for c in j.findall("command_interface")] == ["position", "velocity"]
        init = j.find("state_interface[@name='position']/param[@name='initial_value']")
        assert float(init.text) == q
    # the rest of the URDF is untouched
    assert len(root.findall("link")) == len(ET.fromstring(desc.urdf).findall("link"))
    # an existing tag is replaced, not doubled
    again = mock_hardware_urdf(ET.tostring(root, encoding="unicode"), desc.joints, q0)
    assert len(ET.fromstring(again).findall("ros2_control")) == 1


def test_mock_urdf_and_controller_errors():
    _, desc = config("panda")
    with pytest.raises(Ros2ControlError, match="are not in the URDF"):
        mock_hardware_urdf(desc.urdf, ["nope"], [0.0])
    with pytest.raises(Ros2ControlError, match="2 joints but 1 initial"):
        mock_hardware_urdf(desc.urdf, desc.joints[:2], [0.0])
    assert controller_for("velocity") == "forward_velocity_controller"
    with pytest.raises(Ros2ControlError, match="not effort .*sim.launch.py"):
        controller_for("effort")


def test_controller_params_name_the_forward_controllers_the_nodes_publish_to():
    p = controller_params(["a", "b"], 250)
    cm = p["controller_manager"]["ros__parameters"]
    assert cm["update_rate"] == 250
    assert cm["joint_state_broadcaster"]["type"] == "joint_state_broadcaster/JointStateBroadcaster"
    for name, iface in (("forward_position_controller", "position"),
                        ("forward_velocity_controller", "velocity")):
        assert cm[name]["type"] == "forward_command_controller/ForwardCommandController"
        assert p[name]["ros__parameters"] == {"joints": ["a", "b"], "interface_name": iface}
    assert cm["joint_trajectory_controller"]["type"] == \
        "joint_trajectory_controller/JointTrajectoryController"
    assert p["joint_trajectory_controller"]["ros__parameters"]["command_interfaces"] == ["position"]


def test_trajectory_duration_keeps_every_joint_under_its_speed():
    # a quintic from rest to rest peaks at 1.875 x the mean speed
    T = trajectory_duration([0.0, 0.0], [1.0, -3.0], [0.5, 1.0])
    assert T == pytest.approx(1.875 * 3.0)
    s = np.linspace(0, 1, 10001)
    speed = 3.0 / T * (30 * s**2 - 60 * s**3 + 30 * s**4)      # the quintic's derivative
    assert speed.max() == pytest.approx(1.0, rel=1e-6)
    assert trajectory_duration([0.0], [0.01], [1.0]) == 1.0                  # the minimum


def test_controller_problem_says_what_to_run():
    ok = [("joint_state_broadcaster", "active"), ("forward_velocity_controller", "active")]
    assert controller_problem(ok, "forward_velocity_controller", "/cm") is None
    why = controller_problem([("forward_velocity_controller", "inactive")],
                             "forward_velocity_controller", "/cm")
    assert why == ("controller forward_velocity_controller is inactive in /cm, not active: "
                   "commands would go nowhere; ros2 control switch_controllers --activate "
                   "forward_velocity_controller -c /cm")
    why = controller_problem(ok[:1], "forward_position_controller", "/cm")
    assert "is not loaded in /cm (loaded: joint_state_broadcaster (active))" in why
    assert why.endswith("spawner forward_position_controller -c /cm")


def test_mock_robot_plan(tmp_path):
    path, desc = config("so101")
    specs = mock_robot_plan(SHARE, path, str(tmp_path), environ={}, namespace="arm",
                            inactive="true")
    by = {(s.package, s.executable, " ".join(s.arguments)): s for s in specs}
    rsp = by[("robot_state_publisher", "robot_state_publisher", "")]
    assert rsp.namespace == "arm" and "<ros2_control" in rsp.parameters[0]["robot_description"]
    cm = by[("controller_manager", "ros2_control_node", "")]
    assert cm.parameters == [str(tmp_path / "controllers.yaml")]
    assert ("~/robot_description", "robot_description") in cm.remappings
    params = yaml.safe_load((tmp_path / "controllers.yaml").read_text())
    assert params["forward_position_controller"]["ros__parameters"]["joints"] == list(desc.joints)
    assert "<ros2_control" in (tmp_path / "robot.urdf").read_text()
    spawners = [s.arguments for s in specs if s.executable == "spawner"]
    assert ["joint_state_broadcaster", "-c", "/arm/controller_manager"] in spawners
    assert ["forward_position_controller", "-c", "/arm/controller_manager", "--inactive"] in spawners
    assert ["forward_velocity_controller", "joint_trajectory_controller", "-c",
            "/arm/controller_manager", "--inactive"] in spawners
    assert all(s.enclave == "" for s in specs)            # other packages' nodes
    assert all(s.env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" for s in specs)
    active = mock_robot_plan(SHARE, path, str(tmp_path / "b"), environ={})
    assert ["forward_position_controller", "-c", "/controller_manager"] in \
        [s.arguments for s in active]
    with pytest.raises(LaunchArgumentError, match="panda_reach.yaml: .*not effort"):
        mock_robot_plan(SHARE, str(PKG / "config" / "panda_reach.yaml"), str(tmp_path / "c"),
                        environ={})


def test_train_plan_passes_the_controller_manager_to_real_robot_samplers(tmp_path):
    path, _ = config("so101")
    specs = train_plan(SHARE, path, use_sim="false", controller_manager="/controller_manager",
                       cwd=str(tmp_path), environ={})
    (s,) = [s for s in specs if s.executable == "sampler_node"]
    assert s.param("controller_manager") == "/controller_manager"
    with pytest.raises(LaunchArgumentError, match="controller_manager:= is for a ros2_control arm"):
        train_plan(SHARE, path, controller_manager="/cm", cwd=str(tmp_path), environ={})
