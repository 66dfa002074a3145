"""Bad input is one clear line (exit code 2 from the CLI), and never costs a byte of an experiment.

Extends tests/test_config.py (unknown keys, wrong scalar types, malformed YAML, a non-experiment
--resume and a non-empty --out are covered there) with: task-level dimension errors, empty and
odd YAML documents, experiment directories that are damaged or hold a state from another task,
and trials that are empty or all NaN.
"""
import json
import pickle
import shutil

import numpy as np
import pytest
import yaml

from gps_ros.cli import main
from gps_ros.experiment import MARKER, Experiment, file_hashes

from conftest import small_config_dict


def tiny(**over):
    """The CI config, even smaller: 1 iteration of 10-step trials, 2 trials per condition."""
    d = small_config_dict(**over)
    d["agent"] = dict(d["agent"], T=over.get("agent", {}).get("T", 10))
    d["algorithm"] = {"samples_per_condition": 2}
    d["iterations"] = 1
    return d


def write_yaml(path, d):
    path.write_text(yaml.safe_dump(d))
    return path


def one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gps-ros: error: "), err
    for w in words:
        assert w in err, err
    return err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One finished tiny experiment (cloned per test that damages it)."""
    d = tmp_path_factory.mktemp("exp")
    cfg = write_yaml(d / "tiny.yaml", tiny())
    assert main(["train", "--config", str(cfg), "--out", str(d / "run"), "--quiet"]) == 0
    return d / "run"


def clone(run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


# --- the config file ----------------------------------------------------------------------------
def _set(path, value):
    def f(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return f


@pytest.mark.parametrize("text, words", [
    ("", ["top level must be a mapping, got NoneType"]),
    ("- 1\n- 2\n", ["top level must be a mapping, got list"]),
    ("agent:\n\tT: 10\n", ["malformed YAML"]),                              # a tab
    # a duplicated key: PyYAML keeps the last one silently, here one without conditions
    ("agent: {T: 10, conditions: [{target: [0, 0, 0]}]}\nagent: {}\n", ["agent.conditions"]),
])
def test_odd_yaml_documents_are_one_line(tmp_path, capsys, text, words):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    rc = main(["train", "--config", str(bad), "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 2
    one_line_error(capsys, *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mutate, words", [
    (_set(["agent", "conditions"], {"target": [0, 0, 0]}), ["agent.conditions:", "valid list"]),
    (_set(["agent", "conditions"], []), ["agent.conditions:"]),
    (_set(["agent", "T"], 1), ["agent.T:", "greater than 1"]),
    (_set(["algorithm", "samples_per_condition"], 0), ["algorithm.samples_per_condition:"]),
    (_set(["logging"], {"tensorboard": "sometimes"}), ["logging.tensorboard:", "valid boolean"]),
    (_set(["logging"], {"wandb": True}), ["logging.wandb: unknown key"]),
    (_set(["cost", "ee"], [{"ramp": "cubic"}]), ["cost.ee.0.ramp:"]),
    (_set(["seed"], 1.5), ["seed:", "valid integer"]),
    # numbers no run can use (issue 27): a NaN target passed validation and failed at the first
    # trial; agent.T = 1e8 ended in a 167 GiB numpy MemoryError traceback
    (lambda d: d["agent"]["conditions"][0].update(target=[float("nan"), 0.1, 0.4]),
     ["agent.conditions.0.target.0: Input should be a finite number (got nan)"]),
    (_set(["agent", "start_joint_positions"], [0.0, -0.3, 0.0, -2.2, 0.0, 2.0, float("inf")]),
     ["agent.start_joint_positions.6: Input should be a finite number (got inf)"]),
    (_set(["cost", "ee"], [{"l2": float("-inf")}]), ["cost.ee.0.l2: Input should be a finite"]),
    (_set(["agent", "T"], 100_000_000), ["agent.T: 100000000 steps x 2 conditions x 2 trials need "
                                         "at least", "GiB (controllers, dynamics, cost derivatives)",
                                         "this machine has"]),
])
def test_more_wrong_types_and_values_are_one_line(tmp_path, capsys, mutate, words):
    d = tiny()
    mutate(d)
    cfg = write_yaml(tmp_path / "c.yaml", d)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    one_line_error(capsys, "config error", *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mutate, words", [
    (_set(["agent", "start_joint_positions"], [0.0, -0.3, 0.0, -2.2, 0.0, 2.0]),
     ["agent.start_joint_positions: needs 7 values", "got 6"]),
    (lambda d: d["agent"]["conditions"][0].update(start_joint_positions=[0.0] * 8),
     ["conditions[0].start_joint_positions: needs 7 values", "got 8"]),
    (_set(["agent", "ee_points"], [[0.05, 0.0, 0.0]]), ["ee_points[0]: must be the EE origin"]),
    (_set(["cost", "action"], {"per_joint": [1.0, 1.0]}), ["cost.action.per_joint needs 7 values, got 2"]),
])
def test_dimensions_that_do_not_match_the_robot_are_one_line(tmp_path, capsys, mutate, words):
    d = tiny()
    mutate(d)
    cfg = write_yaml(tmp_path / "c.yaml", d)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    one_line_error(capsys, "config error", *words)
    assert not (tmp_path / "out").exists(), "nothing may be created for a config the robot rejects"


def test_memory_estimate_grows_with_the_run_and_counts_frames():
    from gps_ros.config import ConfigError, check_memory, parse_config, run_memory_estimate

    cfg = parse_config(tiny(), "t")
    n = 7
    dXU = 2 * n + 6 * len(cfg.agent.ee_points) + n
    base = run_memory_estimate(cfg, n)
    assert base == 8.0 * dXU ** 2 * (8 + 2) * 10 * 2           # T 10, 2 conditions, 2 trials
    cfg.agent.T = 20
    assert run_memory_estimate(cfg, n) == 2 * base
    cfg.agent.camera = {"width": 32, "height": 16}
    assert run_memory_estimate(cfg, n) == 2 * base + 2 * 32 * 16 * 3 * 20 * 2
    check_memory(cfg, n, available=run_memory_estimate(cfg, n))          # fits exactly
    with pytest.raises(ConfigError, match="camera frames"):
        check_memory(cfg, n, available=run_memory_estimate(cfg, n) - 1)


def test_a_full_disk_stops_the_run_in_one_line_and_it_resumes(tmp_path, capsys, monkeypatch):
    """The disk fills up while iteration 2 commits (ENOSPC on state.pkl): one line (exit 1) with
    where, the iteration kept and the resume command, no traceback; after freeing space the run
    resumes and ends with the metrics of an uninterrupted run."""
    from conftest import fill_disk_at_commit

    d = tiny()
    d["iterations"] = 3
    cfg = write_yaml(tmp_path / "c.yaml", d)
    fill_disk_at_commit(monkeypatch, 2)
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gps-ros: training failed: no space left on the device writing "), err
    assert "state.pkl" in err and "keeps iteration 1: free space and resume with gps-ros train " \
        f"--resume {out.resolve()}" in err, err
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    ref = tmp_path / "ref"
    assert main(["train", "--config", str(cfg), "--out", str(ref), "--quiet"]) == 0
    got, want = Experiment.open(out).read_metrics(), Experiment.open(ref).read_metrics()
    assert [r["iteration"] for r in got] == [1, 2, 3]
    assert [r["cost"] for r in got] == [r["cost"] for r in want]


# --- the experiment directory ---------------------------------------------------------------------
def test_resume_on_paths_that_are_not_experiments(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    one_line_error(capsys, "is not a directory")
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["train", "--resume", str(f)]) == 2
    one_line_error(capsys, "is not a directory")
    assert f.read_text() == "x"


def test_out_that_already_holds_an_experiment_is_refused_untouched(run_dir, tmp_path, capsys):
    run = clone(run_dir, tmp_path)
    before = file_hashes(run)
    cfg = write_yaml(tmp_path / "c.yaml", tiny())
    assert main(["train", "--config", str(cfg), "--out", str(run), "--quiet"]) == 2
    one_line_error(capsys, "already holds an experiment", "--resume")
    assert file_hashes(run) == before


def _damage_marker_format(run):
    (run / MARKER).write_text(json.dumps({"format": 99}))


def _damage_marker_json(run):
    (run / MARKER).write_text("{not json")


def _damage_config(run):
    (run / "config.yaml").write_text("agent: {T: ten}\n")


def _damage_state_bytes(run):
    (run / "state.pkl").write_bytes(b"\x80\x05garbage")


def _damage_state_type(run):
    (run / "state.pkl").write_bytes(pickle.dumps([1, 2, 3]))


def _damage_state_truncated(run):
    data = (run / "state.pkl").read_bytes()
    assert data[:2] == b"\x1f\x8b"                    # written gzip-compressed
    (run / "state.pkl").write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage, words", [
    (_damage_marker_format, ["experiment format 99 is not supported"]),
    (_damage_marker_json, ["unreadable"]),
    (_damage_config, ["config error", "agent"]),
    (_damage_state_bytes, ["state.pkl is unreadable"]),
    (_damage_state_type, ["is not a gps_ros algorithm state"]),
    (_damage_state_truncated, ["state.pkl is unreadable"]),
])
def test_damaged_experiment_is_one_line_and_untouched(run_dir, tmp_path, capsys, damage, words):
    run = clone(run_dir, tmp_path)
    damage(run)
    before = file_hashes(run)
    assert main(["train", "--resume", str(run), "--iterations", "2", "--quiet"]) == 2
    one_line_error(capsys, *words)
    assert file_hashes(run) == before


def test_state_from_before_compression_still_resumes(run_dir, tmp_path):
    """Runs written before state.pkl was gzip-compressed (a plain pickle) load unchanged."""
    import gzip

    from gps_ros.experiment import Experiment

    run = clone(run_dir, tmp_path)
    packed = (run / "state.pkl").read_bytes()
    (run / "state.pkl").write_bytes(gzip.decompress(packed))
    state = Experiment.open(run).load_state()
    assert state["iteration"] == 1
    Experiment.open(run).save_state(state)               # the same state, the same bytes again
    assert (run / "state.pkl").read_bytes() == packed
    assert main(["train", "--resume", str(run), "--iterations", "2", "--quiet"]) == 0


@pytest.mark.parametrize("other, words", [
    ({"agent": {"T": 12}}, ["controller has T=12", "needs T=10"]),
    ({"agent": {"conditions": [{"target": [0.5, 0.0, 0.4]}]}}, ["has 1 conditions, the config has 2"]),
    ({"agent": {"conditions": [{"target": [0.5, 0.0, 0.4]}, {"target": [0.45, -0.15, 0.5]}]}},
     ["saved for another task", "targets"]),
])
def test_state_from_another_task_is_refused(run_dir, tmp_path, capsys, other, words):
    """A state.pkl (controllers) from a config with another T / other conditions -> one line."""
    d = tiny()
    d["agent"] = dict(d["agent"], **other["agent"])
    cfg = write_yaml(tmp_path / "other.yaml", d)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "other"), "--quiet"]) == 0
    capsys.readouterr()
    run = clone(run_dir, tmp_path)
    shutil.copy(tmp_path / "other" / "state.pkl", run / "state.pkl")
    before = file_hashes(run)
    assert main(["train", "--resume", str(run), "--iterations", "2", "--quiet"]) == 2
    one_line_error(capsys, "state.pkl", *words)
    assert file_hashes(run) == before


def test_interrupted_creation_is_reported_and_taken_over(tmp_path, capsys):
    cfg_d = tiny()
    run = tmp_path / "run"
    run.mkdir()
    (run / "iterations").mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(cfg_d))    # killed before the marker
    (run / ".gps_ros_experiment.json.abc123.tmp").write_text("{")
    assert main(["train", "--resume", str(run)]) == 2
    one_line_error(capsys, "creation was interrupted", f"--out {run}")
    cfg = write_yaml(tmp_path / "c.yaml", cfg_d)
    assert main(["train", "--config", str(cfg), "--out", str(run), "--quiet"]) == 0
    assert (run / MARKER).exists() and (run / "state.pkl").exists()
    assert not list(run.glob(".*.tmp"))
    # but a directory with anything else in it is never taken over
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("mine")
    (other / "notes.txt").write_text("mine")
    assert main(["train", "--config", str(cfg), "--out", str(other), "--quiet"]) == 2
    one_line_error(capsys, "not empty")
    assert (other / "config.yaml").read_text() == "mine"


# --- trials ----------------------------------------------------------------------------------------
def test_empty_trials_are_a_clear_error():
    from gps_ros.dynamics import DynamicsFitter
    from gps_ros.sample import Trajectories

    empty = Trajectories(np.zeros((0, 10, 4)), np.zeros((0, 10, 2)), [])
    with pytest.raises(ValueError, match="no trials"):
        DynamicsFitter(use_prior=False).fit([empty])
    with pytest.raises(ValueError, match="nothing to concatenate"):
        Trajectories.concatenate([empty])


def test_all_nan_trials_fail_cleanly_and_keep_the_experiment(run_dir, tmp_path, capsys, monkeypatch):
    """A robot that returns only NaN: one line (exit 1), the committed iterations untouched, and the
    run resumes once the robot is fine again."""
    from gps_ros.agents import SimAgent

    run = clone(run_dir, tmp_path)
    committed = {k: v for k, v in file_hashes(run).items()
                 if k in ("state.pkl", "config.yaml", MARKER) or k.startswith("iterations/0001/")}
    real = SimAgent.sample

    def nan_robot(self, *a, **k):
        tr = real(self, *a, **k)
        tr.X[:, 3:] = np.nan
        return tr

    monkeypatch.setattr(SimAgent, "sample", nan_robot)
    assert main(["train", "--resume", str(run), "--iterations", "2", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training failed" in err and "discarded" in err, err
    after = file_hashes(run)
    assert {k: after.get(k) for k in committed} == committed
    assert Experiment.open(run).load_state()["iteration"] == 1
    monkeypatch.setattr(SimAgent, "sample", real)
    assert main(["train", "--resume", str(run), "--iterations", "2", "--quiet"]) == 0
    assert Experiment.open(run).load_state()["iteration"] == 2


def test_missing_urdf_is_not_reachable_from_a_config():
    """There is no URDF path in the config (the Panda URDF ships with pybullet_data), so a missing
    URDF is not a user input; the schema rejects a `urdf` key like any unknown key."""
    from gps_ros.config import ConfigError, parse_config

    d = tiny()
    d["agent"]["urdf"] = "/nonexistent/panda.urdf"
    with pytest.raises(ConfigError, match="agent.urdf: unknown key"):
        parse_config(d, "x.yaml")


def test_export_mcap_bad_input_is_one_line(run_dir, tmp_path, capsys):
    assert main(["export-mcap", "--run", str(tmp_path)]) == 2
    one_line_error(capsys, "not a gps_ros experiment")
    run = clone(run_dir, tmp_path)
    before = file_hashes(run)
    assert main(["export-mcap", "--run", str(run), "--iteration", "5"]) == 2
    one_line_error(capsys, "iteration 5 is not a complete iteration", "complete: 1..1")
    assert file_hashes(run) == before
