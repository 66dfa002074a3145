"""Long unattended runs: a resume finishes the run that was asked for, survives a torn last line
of metrics.jsonl and an unreadable state.pkl (falling back to state.prev.pkl), and ends exactly
where an uninterrupted run ends."""
import gzip
import json
import logging
import pickle
import shutil

import numpy as np
import pytest
import yaml

from conftest import small_config_dict, train_killed_at_commit
from gps_ros import atomic, tb
from gps_ros.cli import main
from gps_ros.config import parse_config
from gps_ros.experiment import Experiment, ExperimentError, check_files, file_hashes
from gps_ros.train import resume, train

T = 10


def _cfg():
    d = small_config_dict()            # its config says iterations: 4
    d["agent"]["T"] = T
    return d


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def _same_run(run, ref):
    """Metrics (but wall times), every iteration's controllers and the TensorBoard scalars (after
    the purge of redone steps, but timings) equal the reference's; every file loads."""
    assert _strip(_rows(run)) == _strip(_rows(ref))
    for it in range(1, len(_rows(ref)) + 1):
        f = f"iterations/{it:04d}/controllers.npz"
        with np.load(ref / f) as a, np.load(run / f) as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), f
    if tb.available():
        scalars = lambda d: {k: v for k, v in tb.read_scalars(d / "tb").items()  # noqa: E731
                             if not k.startswith("time_s/")}
        assert scalars(run) == scalars(ref)
    assert check_files(run) == []


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """An uninterrupted run of 3 iterations."""
    return train(parse_config(_cfg(), "t"), tmp_path_factory.mktemp("ref") / "run", iterations=3,
                 progress=False)


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """``gps-ros train --iterations 3`` killed at the commit point of iteration 3: iterations 1
    and 2 committed (state.pkl, state.prev.pkl), iteration 3's files, metrics line and scalars
    written."""
    tmp = tmp_path_factory.mktemp("killed")
    train_killed_at_commit(_cfg(), tmp / "run", 3)
    run = tmp / "run"
    assert [r["iteration"] for r in _rows(run)] == [1, 2, 3]
    assert Experiment.open(run).load_state()["iteration"] == 2
    return run


def _clone(src, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def _state_iteration(path):
    return pickle.loads(gzip.decompress(path.read_bytes()))["iteration"]


# --- the requested iterations ---------------------------------------------------------------------
def test_resume_finishes_the_iterations_asked_for(killed, ref, tmp_path, capsys):
    """Started with --iterations 3 (the config says 4) and killed: a plain --resume runs to 3,
    not 4; --resume --iterations 4 sets a new target that the run keeps."""
    run = _clone(killed, tmp_path)
    assert yaml.safe_load((run / "config.yaml").read_text())["iterations"] == 3
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert [r["iteration"] for r in _rows(run)] == [1, 2, 3]
    _same_run(run, ref)
    assert main(["train", "--resume", str(run), "--iterations", "4", "--quiet"]) == 0
    assert [r["iteration"] for r in _rows(run)] == [1, 2, 3, 4]
    assert Experiment.open(run).cfg.iterations == 4
    before = file_hashes(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0     # nothing left to do
    assert file_hashes(run) == before


def test_train_records_the_target_but_leaves_the_callers_config(tmp_path):
    cfg = parse_config(_cfg(), "t")
    cfg.logging.plots = False
    run = train(cfg, tmp_path / "run", iterations=1, progress=False)
    assert cfg.iterations == 4
    assert Experiment.open(run).cfg.iterations == 1
    assert Experiment.open(run).cfg.model_dump() == {**cfg.model_dump(), "iterations": 1}


# --- a torn last line of metrics.jsonl ------------------------------------------------------------
def test_torn_metrics_line_of_the_redone_iteration_is_dropped(killed, ref, tmp_path, caplog):
    """Power loss while iteration 3's metrics line was written: the line is cut off.  The resume
    rewrites metrics.jsonl without it, says so, and redoes iteration 3."""
    run = _clone(killed, tmp_path)
    text = (run / "metrics.jsonl").read_text()
    torn = text[:-40]
    (run / "metrics.jsonl").write_text(torn)
    assert [r["iteration"] for r in Experiment.open(run).read_metrics()] == [1, 2]
    with caplog.at_level(logging.WARNING, logger="gps_ros.experiment"):
        resume(run, progress=False)
    dropped = [r.getMessage() for r in caplog.records
               if "dropped a torn last line" in r.getMessage()]
    assert len(dropped) == 1 and '{"iteration": 3' in dropped[0], caplog.text
    _same_run(run, ref)


def test_torn_metrics_line_of_a_committed_iteration_redoes_it(killed, ref, tmp_path, caplog):
    """The torn line is iteration 2's, which state.pkl commits: the resume falls back to
    state.prev.pkl (iteration 1), so the redone iteration 2 writes its line again."""
    run = _clone(killed, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1][:25])
    with caplog.at_level(logging.WARNING, logger="gps_ros.experiment"):
        resume(run, progress=False)
    assert "no line for iteration(s) 2 of state.pkl" in caplog.text
    _same_run(run, ref)


def test_a_bad_metrics_line_before_the_last_is_one_line_and_untouched(killed, tmp_path, capsys):
    run = _clone(killed, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0][:20] + "\n" + "\n".join(lines[1:]) + "\n")
    before = file_hashes(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "metrics.jsonl: line 1 is not a metrics row" in err, err
    assert file_hashes(run) == before


# --- state.pkl unreadable: state.prev.pkl ---------------------------------------------------------
def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _garbage(p):
    p.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)


def _not_a_state(p):
    p.write_bytes(gzip.compress(pickle.dumps([1, 2, 3])))


def _missing(p):
    p.unlink()          # a commit killed between its two renames


@pytest.mark.parametrize("damage", [_garbage, _not_a_state, _missing])
def test_an_unusable_state_falls_back_to_the_previous_one(killed, tmp_path, caplog, damage):
    run = _clone(killed, tmp_path)
    assert _state_iteration(run / "state.prev.pkl") == 1
    damage(run / "state.pkl")
    with caplog.at_level(logging.WARNING, logger="gps_ros.experiment"):
        state = Experiment.open(run).load_state()
    assert state["iteration"] == 1
    assert "state.pkl" in caplog.text and "using state.prev.pkl (iteration 1)" in caplog.text
    assert Experiment.open(run).completed_iterations() == [1]


def test_truncated_state_resumes_from_the_previous_iteration_and_ends_identically(
        killed, ref, tmp_path, caplog):
    """state.pkl of iteration 2 truncated (a corrupt gzip stream): the resume warns, starts from
    state.prev.pkl (iteration 1), drops metrics line 2 and 3, purges their scalars, redoes
    iterations 2 and 3 and ends with the metrics, controllers and scalars of an uninterrupted
    run; the unreadable file is replaced without ever becoming state.prev.pkl."""
    run = _clone(killed, tmp_path)
    _truncate(run / "state.pkl")
    with caplog.at_level(logging.WARNING, logger="gps_ros.experiment"):
        resume(run, progress=False)
    assert "state.pkl is unreadable" in caplog.text and "using state.prev.pkl" in caplog.text
    _same_run(run, ref)
    assert _state_iteration(run / "state.pkl") == 3
    assert _state_iteration(run / "state.prev.pkl") == 2


@pytest.mark.parametrize("prev", ["damaged", "absent"])
def test_no_readable_state_is_one_line_and_untouched(killed, tmp_path, capsys, prev):
    run = _clone(killed, tmp_path)
    _truncate(run / "state.pkl")
    if prev == "damaged":
        _garbage(run / "state.prev.pkl")
    else:
        (run / "state.prev.pkl").unlink()
    before = file_hashes(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "state.pkl is unreadable" in err
    if prev == "damaged":
        assert "state.prev.pkl is unreadable" in err and "cannot be resumed from either" in err
    assert file_hashes(run) == before
    with pytest.raises(ExperimentError):
        Experiment.open(run).load_state()


# --- the commit's rename chain (no training) ------------------------------------------------------
def _state(it):
    return {"iteration": it, "trials": 3, "conditions": [], "fitter": None}


def test_a_readable_committed_state_exists_at_every_rename(tmp_path, monkeypatch):
    """Around every rename of three commits, state.pkl or state.prev.pkl holds a readable state
    at least as new as the last commit's; a kill between the two renames of a commit leaves the
    previous state in state.prev.pkl, and the next commit starts the chain again from there."""
    exp = Experiment.create(tmp_path / "run", parse_config(_cfg(), "t"))
    committed = [0]
    real = atomic.os.replace

    def check():
        state = Experiment.open(exp.root).load_state()
        assert (state["iteration"] if state else 0) >= committed[0]

    def replace(src, dst):
        check()
        real(src, dst)
        check()

    monkeypatch.setattr(atomic.os, "replace", replace)
    for it in (1, 2, 3):
        exp.save_state(_state(it))
        committed[0] = it
        assert _state_iteration(exp.state_path) == it
    assert _state_iteration(exp.prev_state_path) == 2

    calls = []

    def killed_between(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", killed_between)
    with pytest.raises(KeyboardInterrupt):
        exp.save_state(_state(4))
    monkeypatch.setattr(atomic.os, "replace", real)
    assert not exp.state_path.exists() and not list(exp.root.glob(".*.tmp"))
    again = Experiment.open(exp.root)
    assert again.load_state()["iteration"] == 3
    again.save_state(_state(4))
    assert _state_iteration(again.state_path) == 4
    assert _state_iteration(again.prev_state_path) == 3


def test_after_a_fallback_the_next_commit_keeps_the_good_previous_state(tmp_path):
    exp = Experiment.create(tmp_path / "run", parse_config(_cfg(), "t"))
    for it in (1, 2):
        exp.save_state(_state(it))
    _garbage(exp.state_path)
    again = Experiment.open(exp.root)
    assert again.load_state()["iteration"] == 1
    again.save_state(_state(2))
    assert _state_iteration(again.state_path) == 2
    assert _state_iteration(again.prev_state_path) == 1
