"""Config validation: unknown keys, wrong types and malformed YAML are one clear line."""
import pytest

from gps_ros.cli import main
from gps_ros.config import ConfigError, load_config, parse_config

from conftest import small_config_dict

CONFIG = "ros2_ws/src/gps_ros/config/panda_reach.yaml"


def test_shipped_config_loads():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "config" / "panda_reach.yaml"
    cfg = load_config(path)
    assert len(cfg.agent.conditions) >= 4
    assert cfg.algorithm.samples_per_condition <= 5


@pytest.mark.parametrize("mutate, key, words", [
    (lambda d: d["agent"].update(bogus=1), "agent.bogus", "unknown key"),
    (lambda d: d["algorithm"].update(kl_step="big"), "algorithm.kl_step", "valid number"),
    (lambda d: d["agent"].update(T="long"), "agent.T", "valid integer"),
    (lambda d: d["agent"]["conditions"][0].update(target=[1, 2]), "agent.conditions.0.target", ""),
    (lambda d: d.update(colour="red"), "colour", "unknown key"),
    (lambda d: d["agent"].update(control_rate_hz=7), "agent", "integer multiple"),
])
def test_bad_config_is_one_line_naming_the_key(mutate, key, words):
    d = small_config_dict()
    mutate(d)
    with pytest.raises(ConfigError) as exc:
        parse_config(d, "x.yaml")
    msg = str(exc.value)
    assert "\n" not in msg
    assert f": {key}:" in msg or f": {key} " in msg, msg
    assert words in msg


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: {T: 10, conditions: [{target: [0, 0, 0]}], frobnicate: 3}\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "agent.frobnicate: unknown key" in err
    assert not (tmp_path / "run").exists()

    bad.write_text("agent: [unclosed\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "malformed YAML" in err

    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_resume_on_a_non_experiment_is_one_line(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a gps_ros experiment" in err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_out_dir_that_is_not_empty_is_refused(tmp_path, capsys):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(small_config_dict()))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["train", "--config", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_overrides_set_nested_keys_and_are_validated(tmp_path):
    import pytest

    from gps_ros.config import ConfigError, load_config

    p = tmp_path / "c.yaml"
    p.write_text("agent:\n  conditions:\n    - target: [0.5, 0.0, 0.4]\n")
    cfg = load_config(p, ["agent.T=33", "algorithm.kl_step=0.25", "seed=4"])
    assert cfg.agent.T == 33 and cfg.algorithm.kl_step == 0.25 and cfg.seed == 4
    with pytest.raises(ConfigError, match="agent"):
        load_config(p, ["agent.nope=1"])
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        load_config(p, ["agent.T"])
