"""Traceable runs: every session of a run (its start, each resume) records the code version,
library versions, thread settings and CPU in environment.json, and ``gps-ros eval`` prints the
training's record beside its own."""
import json

from conftest import small_config_dict
from gps_ros import provenance
from gps_ros.cli import main
from gps_ros.config import parse_config
from gps_ros.experiment import Experiment, check_files
from gps_ros.train import resume, train


def test_a_run_records_each_session_and_eval_prints_it(tmp_path, capsys, monkeypatch):
    d = small_config_dict()
    d["agent"]["T"] = 10
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    run = train(parse_config(d, "t"), tmp_path / "run", iterations=1, progress=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")           # the resume runs with another setting
    resume(run, iterations=2, progress=False)
    sessions = Experiment.open(run).environments()
    assert [s["from_iteration"] for s in sessions] == [0, 1]
    first, second = sessions
    assert first["code"].startswith(("git ", "gps_ros "))
    for lib in ("gps_ros", "numpy", "pybullet"):
        assert first["libraries"][lib]
    assert first["cpu"]["logical_cores"] >= 1 and isinstance(first["cpu"]["simd"], list)
    assert "MKL_NUM_THREADS" not in first["threads"]
    assert second["threads"]["MKL_NUM_THREADS"] == "3"
    assert check_files(run) == []
    line = provenance.summary(second)
    assert second["code"] in line and "MKL_NUM_THREADS=3" in line and "pybullet" in line
    json.dumps(sessions)


def test_summary_of_an_older_or_partial_record():
    assert provenance.summary({}).startswith("?; threads: defaults")
    rec = {"code": "git v1", "libraries": {"torch": "2.13.0"}, "threads": {"torch": 2},
           "cpu": {"model": "X", "logical_cores": 2, "simd": ["avx2"]}}
    assert provenance.summary(rec) == "git v1; torch 2.13.0; threads: torch 2; X x2 [avx2]"
