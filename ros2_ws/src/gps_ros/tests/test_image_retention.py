"""logging.keep_images_iterations: only the last N iterations keep their camera frames on disk;
training, resume and export do not notice (nothing reads older frames back)."""
import importlib.util
import json
import logging

import numpy as np
import pytest

from conftest import small_vision_config_dict
from gps_ros.config import ConfigError, parse_config
from gps_ros.experiment import Experiment, check_files, export_iteration
from gps_ros.sample import (TrialMeta, Trajectories, drop_image_obs, dropped_obs,
                            image_obs_keys)
from gps_ros.train import resume, train

MCAP = importlib.util.find_spec("mcap_ros2") is not None


def _vision(keep=None, mcap=False):
    d = small_vision_config_dict()
    d["logging"] = {"keep_images_iterations": keep, "mcap": mcap, "plots": False}
    return parse_config(d, "t")


def _rows(run):
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_drop_image_obs_keeps_everything_else(tmp_path):
    rng = np.random.default_rng(0)
    tr = Trajectories(rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 3)),
                      [TrialMeta(condition=1, seed=7), TrialMeta(condition=1, discarded=True,
                                                                  reason="x")],
                      {"image": rng.integers(0, 255, (2, 5, 8, 8, 3), dtype=np.uint8),
                       "force": rng.normal(size=(2, 5, 6))})
    f = tmp_path / "trials_c01.npz"
    tr.save(f)
    assert image_obs_keys(f) == ["image"] and dropped_obs(f) == []
    size = f.stat().st_size
    assert drop_image_obs(f) == ["image"]
    assert f.stat().st_size < size and dropped_obs(f) == ["image"] and image_obs_keys(f) == []
    back = Trajectories.load(f)
    assert np.array_equal(back.X, tr.X) and np.array_equal(back.U, tr.U) and back.meta == tr.meta
    assert list(back.obs) == ["force"] and np.array_equal(back.obs["force"], tr.obs["force"])
    data = f.read_bytes()
    assert drop_image_obs(f) == [] and f.read_bytes() == data          # idempotent, untouched


@pytest.mark.parametrize("value, ok", [(None, True), (1, True), (3, True), (0, False), (-2, False),
                                       ("all", False)])
def test_the_option_is_validated(value, ok):
    d = small_vision_config_dict()
    d["logging"] = {"keep_images_iterations": value}
    if ok:
        assert parse_config(d, "x.yaml").logging.keep_images_iterations == value
    else:
        with pytest.raises(ConfigError) as err:
            parse_config(d, "x.yaml")
        msg = str(err.value)
        assert len(msg.splitlines()) == 1 and "logging.keep_images_iterations" in msg, msg


def test_old_frames_are_dropped_and_the_run_resumes_identically(tmp_path, caplog):
    """keep 1: after each commit the iterations before it lose their frames (trial files and
    trials.mcap); a resume after that, the metrics and the trials' X, U and metadata equal those
    of a run that keeps everything, and an old iteration still exports (without images)."""
    clean = train(_vision(), tmp_path / "clean", iterations=3, progress=False)
    run = train(_vision(keep=1, mcap=MCAP), tmp_path / "run", iterations=2, progress=False)
    exp = Experiment.open(run)
    assert [dropped_obs(f) for f in exp.trial_files(1)] == [["image"], ["image"]]
    assert [image_obs_keys(f) for f in exp.trial_files(2)] == [["image"], ["image"]]
    resume(run, iterations=3, progress=False)
    assert _rows(run) == _rows(clean)
    for it in (1, 2, 3):
        for f, g in zip(exp.trial_files(it), Experiment.open(clean).trial_files(it)):
            a, b = Trajectories.load(f), Trajectories.load(g)
            assert np.array_equal(a.X, b.X) and np.array_equal(a.U, b.U) and a.meta == b.meta
            if it < 3:
                assert a.obs == {} and dropped_obs(f) == ["image"]
                assert f.stat().st_size < g.stat().st_size
            else:
                assert np.array_equal(a.obs["image"], b.obs["image"])
    assert exp.drop_old_images(3) == []                                   # nothing left to do
    assert check_files(run) == []
    if MCAP:
        from gps_ros.record import IMAGE_TOPIC, read_trials_mcap

        topics = {it: set(read_trials_mcap(run / f"iterations/{it:04d}/trials.mcap"))
                  for it in (1, 2, 3)}
        assert IMAGE_TOPIC not in topics[1] and IMAGE_TOPIC not in topics[2]
        assert IMAGE_TOPIC in topics[3] and topics[1] == topics[2] == topics[3] - {IMAGE_TOPIC}
        with caplog.at_level(logging.WARNING, logger="gps_ros.experiment"):
            out = export_iteration(run, 1, tmp_path / "one.mcap")
        assert IMAGE_TOPIC not in read_trials_mcap(out)
        assert "iteration 1 has no image any more" in caplog.text


def test_a_ros_run_s_frame_files_go_with_their_iteration(tmp_path):
    """Over ROS the samplers write each trial's frames to DIR/trials/images/ and the trial files
    name them (image_paths): retention removes those of the old iterations too, never a file
    outside the experiment directory."""
    cfg = _vision(keep=1)
    exp = Experiment.create(tmp_path / "run", cfg)
    outside = tmp_path / "elsewhere.npz"
    np.savez(outside, image=np.zeros(1))
    frames = {}
    for it in (1, 2):
        d = exp.root / "iterations" / f"{it:04d}"
        d.mkdir(parents=True, exist_ok=True)
        for m, f in enumerate(exp.trial_files(it)):
            img = exp.root / "trials" / "images" / f"images_c{m}_{it}.npz"
            img.parent.mkdir(parents=True, exist_ok=True)
            np.savez(img, image=np.zeros((3, 4, 4, 3), np.uint8))
            frames[(it, m)] = img
            paths = (str(img), str(outside)) if m == 0 else (str(img),)
            Trajectories(np.zeros((1, 3, 2)), np.zeros((1, 3, 1)),
                         [TrialMeta(condition=m, image_paths=paths)],
                         {"image": np.zeros((1, 3, 4, 4, 3), np.uint8)}).save(f)
    assert exp.drop_old_images(2) == [1]
    assert [p.exists() for (it, m), p in sorted(frames.items())] == [False, False, True, True]
    assert outside.exists()
    assert Trajectories.load(exp.trial_files(1)[0]).meta[0].image_paths[0] == str(frames[(1, 0)])
    assert exp.drop_old_images(2) == []                                # idempotent
