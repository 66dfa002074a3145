import pytest

from gps_ros.config import parse_config


def sim_limits(agent=None):
    """The safety limits of a config's robot (default: the simulated Panda of the configs that
    name no robot), in agent.robot.joints order."""
    from gps_ros.task import robot_description

    if agent is None:
        agent = parse_config(small_config_dict(), "test").agent
    return robot_description(agent).limits()


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


def small_peg_config_dict(iterations: int = 6, **algorithm):
    """The CI-sized peg insertion: the shipped config/panda_peg.yaml with one hole near the start
    pose, a wider hole (6 mm clearance per side instead of 3), 3 s trials, 3 trials per
    iteration and a capped KL step (``algorithm`` entries override)."""
    from pathlib import Path

    import yaml

    d = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "panda_peg.yaml").read_text())
    d["name"] = "ci_peg"
    d["iterations"] = iterations
    d["agent"]["conditions"] = [{"target": [0.55, 0.08, 0.06]}]
    d["agent"]["peg"]["clearance"] = 0.006
    d["agent"]["T"] = 60
    d["algorithm"].update({"samples_per_condition": 3, "max_step_mult": 3.0, **algorithm})
    return d


def fill_disk_at_commit(monkeypatch, commit: int = 2) -> None:
    """The disk fills up as the ``commit``-th iteration commits: writing its state.pkl raises
    ENOSPC (every other write goes through); ``monkeypatch.undo()`` frees the space."""
    import errno

    from gps_ros import experiment as expmod

    real, commits = expmod.atomic_write_bytes, []

    def fill_up(path, data, **kw):
        if str(path).endswith("state.pkl"):
            commits.append(path)
            if len(commits) == commit:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **kw)

    monkeypatch.setattr(expmod, "atomic_write_bytes", fill_up)


def train_killed_at_commit(config: dict, run, iterations: int = 3) -> None:
    """``gps-ros train --config C --out RUN --iterations N`` killed at the commit point of iteration
    N (``KeyboardInterrupt`` in ``save_state``): iterations before it committed, its files,
    metrics line and scalars written."""
    import yaml

    from gps_ros.cli import main
    from gps_ros.experiment import Experiment

    cfg = run.parent / f"{run.name}.yaml"
    cfg.write_text(yaml.safe_dump(config))
    real = Experiment.save_state

    def die_on_last(self, state):
        if state["iteration"] == iterations:
            raise KeyboardInterrupt("killed")
        real(self, state)

    mp = pytest.MonkeyPatch()
    mp.setattr(Experiment, "save_state", die_on_last)
    try:
        assert main(["train", "--config", str(cfg), "--out", str(run), "--iterations",
                     str(iterations), "--quiet"]) == 130
    finally:
        mp.undo()
