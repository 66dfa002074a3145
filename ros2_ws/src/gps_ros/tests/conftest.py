import pytest

from gps_ros.config import parse_config


def small_config_dict(**over):
    """A CI-sized Panda reach: 2 conditions, 2 s trials, 3 trials per condition."""
    d = {
        "name": "ci_reach",
        "seed": 0,
        "iterations": 4,
        "agent": {
            "T": 40,
            "conditions": [{"target": [0.55, 0.15, 0.35]}, {"target": [0.45, -0.15, 0.5]}],
        },
        "cost": {"ee": [{"ramp": "quadratic", "l2": 10.0, "l1": 1.0, "alpha": 1e-4}]},
        "init_controller": {"init_var": 2.0},
        "algorithm": {"samples_per_condition": 3},
        "dynamics": {"prior": {"max_samples": 6}},
    }
    for k, v in over.items():
        d[k] = v
    return d


def small_vision_config_dict(**policy):
    """A CI-sized visuomotor MDGPS task: T = 12, 32x32 camera frames, 2 trials per condition, a
    tiny network (``policy`` entries override)."""
    d = small_config_dict()
    d["agent"]["T"] = 12
    d["agent"]["camera"] = {"width": 32, "height": 32}
    d["agent"]["target_region"] = {"low": [0.45, -0.15, 0.35], "high": [0.55, 0.15, 0.5]}
    d["algorithm"]["type"] = "mdgps"
    d["algorithm"]["samples_per_condition"] = 2
    d["policy"] = {"conv_channels": [8, 4], "conv_kernels": [5, 3], "conv_strides": [2, 1],
                   "hidden": [16], "iterations": 20, "linearization": "jacobian", **policy}
    return d


@pytest.fixture
def small_cfg():
    return parse_config(small_config_dict(), "test")
