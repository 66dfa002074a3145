"""Node parameters as ROS users expect them (gps_ros.ros.params), without ROS: every parameter of
every node has a description, its default lies in its range and choices, bad values are one line,
and the live safety scales change the filter's clamp from the next command on."""
import ast
import math
from pathlib import Path

import numpy as np
import pytest

from gps_ros.ros.params import SPECS, check, spec
from gps_ros.safety import SafetyError, SafetyFilter, SafetyLimits

ROS = Path(__file__).resolve().parents[1] / "gps_ros" / "ros"


def node_tables():
    """{(file, table): {name: default}} of every parameter table of the nodes (read with ast:
    the node modules import rclpy), ``**`` entries expanded, inline declare_parameters dicts
    included."""
    tables, refs = {}, {}
    for f in sorted(ROS.glob("*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            d = None
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and \
                    getattr(node.targets[0], "id", "").endswith("PARAMS"):
                key, d = (f.name, node.targets[0].id), node.value
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == \
                    "declare_parameters" and len(node.args) > 1 and isinstance(node.args[1], ast.Dict):
                key, d = (f.name, f"inline@{node.lineno}"), node.args[1]
            if d is None:
                continue
            entries, spread = {}, []
            for k, v in zip(d.keys, d.values):
                if k is None:
                    spread.append(v.id)
                else:
                    entries[k.value] = ast.literal_eval(v)
            tables[key], refs[key] = entries, spread
    by_name = {name: t for (f, name), t in tables.items()}
    for key, spread in refs.items():
        for name in spread:
            tables[key].update(by_name[name])
    return tables


def test_every_node_parameter_has_a_spec_and_a_default_it_allows():
    tables = node_tables()
    names = {n for t in tables.values() for n in t}
    assert len(tables) >= 9 and len(names) >= 60, tables.keys()
    for (f, table), params in tables.items():
        for name, default in params.items():
            s = spec(name)
            assert s.description, name
            assert check(name, default) is None, (f, name, default)
            if s.range is not None:
                assert isinstance(default, (int, float)) and not isinstance(default, bool), name
            if s.choices is not None:
                assert isinstance(default, str), name
    assert set(SPECS) <= names | {"num_threads"}, set(SPECS) - names          # no stale specs
    live = {n for n, s in SPECS.items() if s.live}
    assert live == {"effort_scale", "velocity_scale", "enabled"}


def test_bad_values_are_one_line():
    assert check("effort_scale", 0.5) is None
    assert check("effort_scale", 1.5) == "effort_scale must be in [0.001, 1], not 1.5"
    assert check("effort_scale", math.nan).startswith("effort_scale must be in")
    assert check("reset_mode", "teleport") == ("reset_mode must be one of 'service', 'move', "
                                               "'wait', 'trajectory', not 'teleport'")
    assert check("max_gain", math.inf) == "max_gain must be a finite number >= 1e-06, not inf"
    with pytest.raises(KeyError, match="'nope' has no description"):
        spec("nope")


LIMITS = SafetyLimits(("a", "b"), [-1.0, -1.0], [1.0, 1.0], [2.0, 1.0], [10.0, 20.0])


def test_live_scales_change_the_clamp_from_the_next_command():
    f = SafetyFilter(LIMITS, mode="effort", control_period=0.1, effort_scale=0.5)
    from gps_ros.safety import JointStateSample

    js = JointStateSample(np.zeros(2), np.zeros(2), 0.0)
    u, _ = f.filter(np.array([100.0, -100.0]), js, 0.0)
    np.testing.assert_allclose(u, [5.0, -10.0])
    f.rescale(effort_scale=0.1)
    u, _ = f.filter(np.array([100.0, -100.0]), js, 0.0)
    np.testing.assert_allclose(u, [1.0, -2.0])
    with pytest.raises(SafetyError, match=r"in \(0, 1\]"):
        f.rescale(velocity_scale=0.0)
    # position mode: the derived step follows velocity_scale; an explicit one stays
    p = SafetyFilter(LIMITS, mode="position", control_period=0.1)
    p.rescale(velocity_scale=0.5)
    np.testing.assert_allclose(p.max_step, [0.1, 0.05])
    u, _ = p.filter(np.array([0.5, 0.5]), js, 0.0)
    np.testing.assert_allclose(u, [0.1, 0.05])
    q = SafetyFilter(LIMITS, mode="position", control_period=0.1, max_step=0.02)
    q.rescale(velocity_scale=0.5)
    np.testing.assert_allclose(q.max_step, [0.02, 0.02])
    v = SafetyFilter(LIMITS, mode="velocity", control_period=0.1)
    v.rescale(velocity_scale=0.25)
    u, _ = v.filter(np.array([9.0, -9.0]), js, 0.0)
    np.testing.assert_allclose(u, [0.5, -0.25])
