"""What a training looks like while it runs: markers of one iteration (no ROS here).

:func:`iteration_markers` turns an iteration's result into plain :class:`Marker` s, in the robot
base's frame (``base_link`` of the robot model, where end-effector positions are given):

* ``targets`` -- a sphere at each condition's target (the first end-effector point's);
* ``plans`` -- each condition's planned mean end-effector path: the new controller's mean under
  the fitted dynamics (the LQR's ``mu``), a line in the condition's colour;
* ``trials`` -- the executed end-effector paths of the iteration's trials, coloured by their cost
  from green (the iteration's cheapest) to red (its dearest); discarded trials grey.

The coordinator_node publishes them as ``visualization_msgs/MarkerArray`` on
``/coordinator_node/markers`` (transient local: a late rviz2 or Foxglove still gets the last
iteration) with :func:`to_marker_array`: add a MarkerArray display of that topic next to the
robot model / TF (fixed frame: the robot model's ``base_link``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

#: a colour per condition (tab10), RGBA
CONDITION_COLORS = [(0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
                    (0.58, 0.40, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.5, 0.5, 0.5),
                    (0.74, 0.74, 0.13), (0.09, 0.75, 0.81)]
DISCARDED = (0.6, 0.6, 0.6, 0.5)


@dataclass
class Marker:
    """One marker: ``kind`` ``sphere`` (one point) or ``line_strip`` (a path)."""

    ns: str
    id: int
    kind: str
    points: np.ndarray                 # (k, 3) in ``frame``
    color: Tuple[float, float, float, float]
    scale: float                       # sphere diameter / line width (m)
    frame: str


def condition_color(m: int, alpha: float = 1.0):
    return (*CONDITION_COLORS[m % len(CONDITION_COLORS)], alpha)


def cost_colors(costs: Sequence[float], alpha: float = 0.8) -> List[tuple]:
    """Green (cheapest) to red (dearest), linear in cost; all green when they are equal."""
    c = np.asarray(costs, dtype=np.float64)
    if c.size == 0:
        return []
    span = float(c.max() - c.min())
    s = (c - c.min()) / span if span > 0 else np.zeros_like(c)
    return [(float(v), float(1.0 - v), 0.0, alpha) for v in s]


def ee_path(X: np.ndarray, ee_slice: slice, target: np.ndarray) -> np.ndarray:
    """(T, 3) positions of the first end-effector point from states ``X (T, dX)`` whose EE
    points are relative to their targets (``target``: the first point's target)."""
    return X[:, ee_slice.start:ee_slice.start + 3] + np.asarray(target)[:3]


def iteration_markers(task, result, cost, frame: str) -> List[Marker]:
    """The markers of one iteration (module docstring): ``task`` a
    :class:`gps_ros.task.TaskModel`, ``result`` an :class:`gps_ros.algorithm.IterationResult`,
    ``cost`` the algorithm's cost (to colour the trials)."""
    ee = task.layout.ee_points
    out: List[Marker] = []
    trials, costs = [], []
    for m, tr in enumerate(result.samples):
        target = np.asarray(task.ee_targets(m), float).reshape(-1, 3)[0]
        out.append(Marker("targets", m, "sphere", target[None], condition_color(m), 0.04, frame))
        if m < len(result.lqr):
            dX = task.dX
            mu = np.asarray(result.lqr[m].mu)[:, :dX]
            out.append(Marker("plans", m, "line_strip", ee_path(mu, ee, target),
                              condition_color(m), 0.008, frame))
        if tr.N:
            c = cost.eval(tr.X, tr.U).l.sum(axis=1)
            for i in range(tr.N):
                trials.append((ee_path(tr.X[i], ee, target), bool(tr.meta[i].discarded)))
                costs.append(float(c[i]))
    kept = [c for c, (_, d) in zip(costs, trials) if not d]
    colors = iter(cost_colors(kept))
    for i, (path, discarded) in enumerate(trials):
        out.append(Marker("trials", i, "line_strip", path,
                          DISCARDED if discarded else next(colors), 0.004, frame))
    return out


def to_marker_array(markers: Sequence[Marker], types, stamp=None, lifetime_s: float = 0.0):
    """A ``visualization_msgs/MarkerArray`` of ``markers``; ``types`` has ``MarkerArray``,
    ``Marker`` and ``Point`` (the generated classes, or stand-ins in tests).  The array starts
    with a DELETEALL, so the trials of an earlier iteration with more trials do not linger."""
    arr = types.MarkerArray()
    clear = types.Marker()
    clear.action = types.Marker.DELETEALL
    arr.markers.append(clear)
    for mk in markers:
        msg = types.Marker()
        msg.header.frame_id = mk.frame
        if stamp is not None:
            msg.header.stamp = stamp
        msg.ns, msg.id = mk.ns, int(mk.id)
        msg.action = types.Marker.ADD
        msg.pose.orientation.w = 1.0
        r, g, b, a = mk.color
        msg.color.r, msg.color.g, msg.color.b, msg.color.a = float(r), float(g), float(b), float(a)
        if mk.kind == "sphere":
            msg.type = types.Marker.SPHERE
            x, y, z = (float(v) for v in mk.points[0])
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, z
            msg.scale.x = msg.scale.y = msg.scale.z = float(mk.scale)
        elif mk.kind == "line_strip":
            msg.type = types.Marker.LINE_STRIP
            msg.scale.x = float(mk.scale)
            msg.points = [types.Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
                          for p in mk.points]
        else:
            raise ValueError(f"marker kind {mk.kind!r} is not sphere or line_strip")
        arr.markers.append(msg)
    return arr


# --- viewer configurations ---------------------------------------------------------------------
MARKERS_TOPIC = "/coordinator_node/markers"
#: where train.launch.py's robot_state_publisher (the first sampler's arm) publishes the URDF
DESCRIPTION_TOPIC = "/sampler_0/robot_description"


def _qos(topic: str, durability: str) -> dict:
    return {"Value": topic, "Depth": 5, "History Policy": "Keep Last",
            "Reliability Policy": "Reliable", "Durability Policy": durability}


def rviz_config(fixed_frame: str, description_topic: str = DESCRIPTION_TOPIC,
                markers_topic: str = MARKERS_TOPIC, focus=(0.4, 0.0, 0.3)) -> dict:
    """An rviz2 display configuration (``rviz2 -d FILE`` reads its YAML): a grid, the robot model
    from ``description_topic``, the TF frames (off) and the coordinator's markers, in the robot
    base's frame ``fixed_frame``, both topics transient local (a late viewer gets the URDF and
    the last iteration)."""
    x, y, z = (float(v) for v in focus)
    return {
        "Panels": [{"Class": "rviz_common/Displays", "Name": "Displays",
                    "Property Tree Widget": {"Expanded": ["/Global Options1"]}},
                   {"Class": "rviz_common/Views", "Name": "Views"}],
        "Visualization Manager": {
            "Class": "",
            "Displays": [
                {"Class": "rviz_default_plugins/Grid", "Name": "Grid", "Enabled": True,
                 "Cell Size": 0.1, "Plane Cell Count": 20, "Color": "160; 160; 164",
                 "Alpha": 0.5, "Reference Frame": "<Fixed Frame>", "Value": True},
                {"Class": "rviz_default_plugins/RobotModel", "Name": "RobotModel",
                 "Enabled": True, "Description Source": "Topic",
                 "Description Topic": _qos(description_topic, "Transient Local"),
                 "Visual Enabled": True, "Collision Enabled": False, "Alpha": 1.0,
                 "Value": True},
                {"Class": "rviz_default_plugins/TF", "Name": "TF", "Enabled": False,
                 "Value": False},
                {"Class": "rviz_default_plugins/MarkerArray", "Name": "GPS iteration",
                 "Enabled": True, "Topic": _qos(markers_topic, "Transient Local"),
                 "Value": True},
            ],
            "Enabled": True,
            "Global Options": {"Background Color": "48; 48; 48", "Fixed Frame": fixed_frame,
                               "Frame Rate": 30},
            "Name": "root",
            "Tools": [{"Class": "rviz_default_plugins/Interact"},
                      {"Class": "rviz_default_plugins/MoveCamera"},
                      {"Class": "rviz_default_plugins/FocusCamera"}],
            "Value": True,
            "Views": {"Current": {"Class": "rviz_default_plugins/Orbit", "Name": "Current View",
                                  "Distance": 1.9, "Focal Point": {"X": x, "Y": y, "Z": z},
                                  "Pitch": 0.45, "Yaw": 0.6, "Near Clip Distance": 0.01,
                                  "Target Frame": "<Fixed Frame>", "Value": "Orbit (rviz)"},
                      "Saved": None},
        },
        "Window Geometry": {"Width": 1280, "Height": 800, "X": 0, "Y": 0,
                            "Hide Left Dock": False, "Hide Right Dock": True},
    }


def foxglove_layout(fixed_frame: str, n_joints: int, description_topic: str = DESCRIPTION_TOPIC,
                    markers_topic: str = MARKERS_TOPIC, focus=(0.4, 0.0, 0.3)) -> dict:
    """A Foxglove layout (import it in Foxglove: Layouts > Import): a 3D panel following
    ``fixed_frame`` with the robot's URDF from ``description_topic`` and the coordinator's
    markers, beside a plot of the first sampler's ``n_joints`` joint positions."""
    return {
        "configById": {
            "3D!gps": {
                "followTf": fixed_frame,
                "scene": {},
                "cameraState": {"distance": 1.9, "perspective": True, "phi": 55, "thetaOffset": 35,
                                "targetOffset": [float(v) for v in focus]},
                "topics": {markers_topic: {"visible": True}},
                "layers": {
                    "grid": {"layerId": "foxglove.Grid", "visible": True, "size": 2,
                             "divisions": 20, "frameId": fixed_frame},
                    "urdf": {"layerId": "foxglove.Urdf", "visible": True, "sourceType": "topic",
                             "topic": description_topic},
                },
            },
            "Plot!gps": {
                "title": "sampler_0 joint positions",
                "paths": [{"value": f"/sampler_0/joint_states.position[{i}]", "enabled": True}
                          for i in range(n_joints)],
            },
        },
        "globalVariables": {},
        "userNodes": {},
        "layout": {"first": "3D!gps", "second": "Plot!gps", "direction": "row",
                   "splitPercentage": 70},
    }


def viewer_configs(cfg) -> Tuple[dict, dict]:
    """(rviz2 config, Foxglove layout) for a task config: the robot model's base as the fixed
    frame (where the markers are), the view centred on the targets."""
    from .task import robot_description

    desc = robot_description(cfg.agent)
    focus = np.mean([c.target for c in cfg.agent.conditions], axis=0)
    return (rviz_config(desc.base_link, focus=focus),
            foxglove_layout(desc.base_link, len(desc.joints), focus=focus))


def write_viewer_configs(cfg, rviz_path, foxglove_path=None) -> None:
    """Write :func:`viewer_configs` (YAML for rviz2, JSON for Foxglove)."""
    import json

    import yaml

    from .atomic import atomic_write_bytes

    rviz, fox = viewer_configs(cfg)
    atomic_write_bytes(rviz_path, yaml.safe_dump(rviz, sort_keys=False).encode())
    if foxglove_path is not None:
        atomic_write_bytes(foxglove_path, (json.dumps(fox, indent=2) + "\n").encode())
