"""The live view's markers (gps_ros.live_view) from a real iteration, without ROS: targets where
the task puts them, each condition's plan starting where its trials start and ending near its
target, trials coloured by cost, and the MarkerArray built from them."""
from types import SimpleNamespace

import numpy as np
import pytest

from gps_ros.agents import SimAgent
from gps_ros.live_view import DISCARDED, cost_colors, iteration_markers, to_marker_array
from gps_ros.train import build_algorithm


@pytest.fixture(scope="module")
def iteration(request):
    from conftest import small_config_dict

    from gps_ros.config import parse_config

    cfg = parse_config(small_config_dict(), "test")
    agent = SimAgent(cfg.agent)
    algo = build_algorithm(cfg, agent)
    res = algo.run_iteration()
    yield agent.task, algo, res
    agent.close()


def test_markers_of_an_iteration(iteration):
    task, algo, res = iteration
    mk = iteration_markers(task, res, algo.cost, "base")
    by = {}
    for m in mk:
        by.setdefault(m.ns, []).append(m)
    M = len(res.samples)
    assert len(by["targets"]) == len(by["plans"]) == M
    assert len(by["trials"]) == sum(tr.N for tr in res.samples)
    assert all(m.frame == "base" for m in mk)
    for c in range(M):
        target = np.asarray(task.ee_targets(c)).reshape(-1, 3)[0]
        np.testing.assert_allclose(by["targets"][c].points[0], target)
        plan = by["plans"][c].points
        assert plan.shape == (task.cfg.T, 3)
        # the plan starts where the trials started (the EE's start position)
        tr = res.samples[c]
        start = tr.X[:, 0, task.layout.ee_points][:, :3] + target
        np.testing.assert_allclose(plan[0], start.mean(axis=0), atol=1e-6)
    # trials: green for the cheapest, red for the dearest of the iteration
    costs = np.concatenate([algo.cost.eval(tr.X, tr.U).l.sum(axis=1) for tr in res.samples])
    colors = [m.color for m in by["trials"]]
    assert colors[int(np.argmin(costs))][:3] == pytest.approx((0.0, 1.0, 0.0))
    assert colors[int(np.argmax(costs))][:3] == pytest.approx((1.0, 0.0, 0.0))


def test_cost_colors_and_discarded_trials(iteration):
    assert cost_colors([]) == []
    assert cost_colors([2.0, 2.0]) == [(0.0, 1.0, 0.0, 0.8)] * 2
    assert [c[0] for c in cost_colors([1.0, 3.0, 2.0])] == [0.0, 1.0, 0.5]
    task, algo, res = iteration
    res.samples[0].meta[0].discarded = True
    try:
        trials = [m for m in iteration_markers(task, res, algo.cost, "base") if m.ns == "trials"]
        assert trials[0].color == DISCARDED
    finally:
        res.samples[0].meta[0].discarded = False


class _Msg(SimpleNamespace):
    def __init__(self, **kw):
        super().__init__(**kw)


def _types():
    """Stand-ins with the fields of visualization_msgs/Marker the builder sets."""
    class Marker:
        ADD, DELETEALL, SPHERE, LINE_STRIP = 0, 3, 2, 4

        def __init__(self):
            self.header = _Msg(frame_id="", stamp=None)
            self.ns, self.id, self.type, self.action = "", 0, 0, 0
            self.pose = _Msg(position=_Msg(x=0.0, y=0.0, z=0.0),
                             orientation=_Msg(x=0.0, y=0.0, z=0.0, w=0.0))
            self.scale = _Msg(x=0.0, y=0.0, z=0.0)
            self.color = _Msg(r=0.0, g=0.0, b=0.0, a=0.0)
            self.points = []

    class MarkerArray:
        def __init__(self):
            self.markers = []

    return SimpleNamespace(Marker=Marker, MarkerArray=MarkerArray, Point=_Msg)


def test_marker_array(iteration):
    task, algo, res = iteration
    mk = iteration_markers(task, res, algo.cost, "base")
    arr = to_marker_array(mk, _types(), stamp="now")
    first, rest = arr.markers[0], arr.markers[1:]
    assert first.action == 3 and len(rest) == len(mk)          # DELETEALL, then every marker
    sphere = next(m for m in rest if m.ns == "targets")
    assert sphere.type == 2 and sphere.scale.x == 0.04 and sphere.pose.orientation.w == 1.0
    np.testing.assert_allclose([sphere.pose.position.x, sphere.pose.position.y,
                                sphere.pose.position.z], mk[0].points[0])
    line = next(m for m in rest if m.ns == "plans")
    assert line.type == 4 and len(line.points) == task.cfg.T and line.header.frame_id == "base"
    assert line.header.stamp == "now" and line.color.a == 1.0
    bad = type(mk[0])("x", 0, "cube", mk[0].points, (1, 1, 1, 1), 1.0, "base")
    with pytest.raises(ValueError, match="cube"):
        to_marker_array([bad], _types())


# --- the viewers' configurations --------------------------------------------------------------------
def test_the_shipped_viewer_configs_are_the_default_reach_s():
    """config/ros/gps_ros.rviz and foxglove_layout.json are what viewer_configs makes for the
    shipped Panda reach (regenerate them with gps_ros.live_view.write_viewer_configs)."""
    import json
    from pathlib import Path

    import yaml

    from gps_ros.config import load_config
    from gps_ros.live_view import viewer_configs

    pkg = Path(__file__).resolve().parents[1]
    rviz, fox = viewer_configs(load_config(pkg / "config" / "panda_reach.yaml"))
    assert yaml.safe_load((pkg / "config" / "ros" / "gps_ros.rviz").read_text()) == \
        yaml.safe_load(yaml.safe_dump(rviz))
    assert json.loads((pkg / "config" / "ros" / "foxglove_layout.json").read_text()) == \
        json.loads(json.dumps(fox))


def test_viewer_configs_show_the_robot_and_the_markers_in_its_base_frame(iteration):
    from gps_ros.config import parse_config
    from gps_ros.live_view import DESCRIPTION_TOPIC, MARKERS_TOPIC, viewer_configs
    from conftest import small_config_dict

    task = iteration[0]
    cfg = parse_config(small_config_dict(), "test")
    rviz, fox = viewer_configs(cfg)
    vm = rviz["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == task.description.base_link == "panda_link0"
    displays = {d["Class"]: d for d in vm["Displays"]}
    model = displays["rviz_default_plugins/RobotModel"]
    assert model["Description Topic"]["Value"] == DESCRIPTION_TOPIC
    markers = displays["rviz_default_plugins/MarkerArray"]["Topic"]
    # transient local like the coordinator's publisher: a viewer started late gets the last one
    assert markers["Value"] == MARKERS_TOPIC == "/coordinator_node/markers"
    assert markers["Durability Policy"] == "Transient Local"
    focus = vm["Views"]["Current"]["Focal Point"]
    np.testing.assert_allclose([focus["X"], focus["Y"], focus["Z"]],
                               np.mean([c.target for c in cfg.agent.conditions], axis=0))
    three_d = fox["configById"]["3D!gps"]
    assert three_d["followTf"] == "panda_link0" and three_d["topics"][MARKERS_TOPIC]["visible"]
    assert three_d["layers"]["urdf"]["topic"] == DESCRIPTION_TOPIC
    assert len(fox["configById"]["Plot!gps"]["paths"]) == len(task.joint_names) == 7
