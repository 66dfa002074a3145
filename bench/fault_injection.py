"""Fault injection: SIGKILL a training run at random moments, resume it, and check that nothing broke.

    python bench/fault_injection.py --kills 10 [--seed 0] [--iterations 4] [--config CFG.yaml]

1. A clean reference run of the config (default: the CI-sized reach of tests/conftest.py) in a
   subprocess: ``python -m gps_ros.cli train --config CFG --out WORK/ref``.
2. The same run in WORK/run, SIGKILLed after a random delay (seeded; uniform between 0 and 1.3x the
   time the reference took to commit its first iteration, so kills land in interpreter start-up,
   experiment creation, sampling, fitting, writing and the commit), then restarted —
   ``train --resume WORK/run``, or ``train --config ... --out WORK/run`` again if the kill came
   before the experiment marker was written — and killed again, ``--kills`` times; then resumed
   without a kill until it completes.
3. After every kill: the directory is openable, every file loads (npz, json lines, yaml, pickle,
   png, TensorBoard records, mcap) apart from temp files of the interrupted write (which resume
   removes), the committed iteration never goes back, and the committed metrics rows equal the
   reference's.  Every restart that was not killed must exit 0 (no resume error).
4. At the end: no problem file at all, metrics.jsonl identical to the reference apart from wall
   times, the last controllers identical, and the TensorBoard scalars (after TensorBoard's purge
   of redone steps) identical to the reference's apart from the timings.

Prints one line per kill and ``kills survived / tried: S / K``; exits 1 if any check failed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ros2_ws" / "src" / "gps_ros"


def ci_config(iterations: int) -> dict:
    sys.path.insert(0, str(PKG / "tests"))
    try:
        from conftest import small_config_dict
    finally:
        sys.path.pop(0)
    d = small_config_dict()
    d["iterations"] = iterations
    return d


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def _metrics(d: Path):
    f = d / "metrics.jsonl"
    return [json.loads(l) for l in f.read_text().splitlines()] if f.exists() else []


def _committed(d: Path) -> int:
    from gps_ros.experiment import Experiment, ExperimentError

    try:
        state = Experiment.open(d).load_state()
    except ExperimentError:
        return -1
    return 0 if state is None else int(state["iteration"])


def _cmd(cfg_path: Path, out: Path) -> list:
    base = [sys.executable, "-m", "gps_ros.cli", "train"]
    if (out / "gps_ros_experiment.json").exists():
        return base + ["--resume", str(out), "--quiet"]
    return base + ["--config", str(cfg_path), "--out", str(out), "--quiet"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(PKG)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _snapshot(out: Path) -> dict:
    if not out.exists():
        return {}
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in out.rglob("*") if p.is_file()}


def _phase(before: dict, after: dict, committed: int) -> str:
    """Where the kill landed, as far as the directory tells: what the process had written."""
    changed = sorted(k for k in after if before.get(k) != after[k])
    gone = sorted(k for k in before if k not in after)
    state = "no experiment yet" if committed == -1 else f"{committed} committed"
    if not changed and not gone:
        return f"before writing anything ({state})"
    last = max(changed, key=lambda k: after[k][1]) if changed else "-"
    return (f"after writing {len(changed)} file(s), last {last}"
            + (f", removing {len(gone)}" if gone else "") + f" ({state})")


def _tb_without_timings(d: Path):
    from gps_ros import tb

    if not tb.available():
        return None
    return {k: v for k, v in tb.read_scalars(d / "tb").items() if not k.startswith("time_s/")}


def run_harness(kills: int, seed: int = 0, iterations: int = 4, config: dict | None = None,
                work: Path | None = None, verbose: bool = True) -> dict:
    """Run the whole experiment; return a summary dict (``ok``, ``survived``, ``tried``, ...)."""
    from gps_ros.experiment import check_files

    say = print if verbose else (lambda *a, **k: None)
    work = Path(work or tempfile.mkdtemp(prefix="gps_fault_"))
    work.mkdir(parents=True, exist_ok=True)
    cfg_path = work / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config or ci_config(iterations)))
    ref, out = work / "ref", work / "run"
    for d in (ref, out):
        shutil.rmtree(d, ignore_errors=True)
    env = _env()
    failures = []

    # 1. the clean reference, timing its first commit
    t0 = time.perf_counter()
    proc = subprocess.Popen(_cmd(cfg_path, ref), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    t_first = None
    while proc.poll() is None:
        if t_first is None and (ref / "state.pkl").exists():
            t_first = time.perf_counter() - t0
        time.sleep(0.01)
    t_ref = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"reference run failed: {proc.stderr.read().strip()}")
    t_first = t_first or t_ref
    ref_rows = _metrics(ref)
    say(f"reference: {len(ref_rows)} iterations in {t_ref:.1f} s (first commit at {t_first:.1f} s)")

    # 2. the killed run(s): a campaign is one run from scratch to completion; when a run completes
    # before all kills have landed, the next campaign starts a fresh one
    rng = np.random.default_rng(seed)
    tried = survived = restarts = campaigns = 0
    final = {}
    while not failures and (tried < kills or campaigns == 0):
        campaigns += 1
        shutil.rmtree(out, ignore_errors=True)
        last_committed = -1
        while tried < kills:
            delay = float(rng.uniform(0.0, 1.3 * t_first))
            cmd = _cmd(cfg_path, out)
            before = _snapshot(out)
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            restarts += 1
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is not None:       # finished (or failed) before the kill
                err = proc.stderr.read().strip()
                if proc.returncode != 0:
                    failures.append(f"restart {restarts} ({' '.join(cmd[3:5])}) exited "
                                    f"{proc.returncode}: {err.splitlines()[-1] if err else ''}")
                else:
                    say(f"run {campaigns} completed before kill {tried + 1} could land")
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
            tried += 1
            all_problems = check_files(out) if out.exists() else []
            tmp = sum(1 for p in all_problems if "temp file of an interrupted write" in p)
            problems = [p for p in all_problems if "temp file of an interrupted write" not in p]
            committed = _committed(out) if out.exists() else -1
            rows = _metrics(out)
            if committed < last_committed:
                problems.append(f"committed iteration went back from {last_committed} to {committed}")
            if committed > 0 and _strip(rows[:committed]) != _strip(ref_rows[:committed]):
                problems.append("committed metrics differ from the reference")
            if problems:
                failures.extend(problems)
            else:
                survived += 1
            say(f"kill {tried:2d}: after {delay:5.2f} s, {_phase(before, _snapshot(out), committed)}, "
                f"{tmp} temp file(s) left{'' if not problems else '  FAILED: ' + '; '.join(problems)}")
            last_committed = max(last_committed, committed)
        if failures:
            break
        # 3. finish this campaign without a kill and compare with the reference
        proc = subprocess.run(_cmd(cfg_path, out), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        restarts += 1
        if proc.returncode != 0:
            failures.append(f"final resume exited {proc.returncode}: {proc.stderr.strip()}")
            break
        failures += check_files(out)
        rows = _metrics(out)
        final["metrics_identical"] = _strip(rows) == _strip(ref_rows)
        if not final["metrics_identical"]:
            failures.append(f"run {campaigns}: final metrics differ from the reference")
        last = f"iterations/{len(ref_rows):04d}/controllers.npz"
        with np.load(ref / last) as a, np.load(out / last) as b:
            final["controllers_identical"] = (a.files == b.files
                                              and all(np.array_equal(a[k], b[k]) for k in a.files))
        if not final["controllers_identical"]:
            failures.append(f"run {campaigns}: final controllers differ from the reference")
        tb_ref, tb_run = _tb_without_timings(ref), _tb_without_timings(out)
        if tb_ref is not None:
            final["tensorboard_identical"] = tb_ref == tb_run
            if tb_ref != tb_run:
                failures.append(f"run {campaigns}: TensorBoard scalars differ from the reference")
        say(f"run {campaigns} complete: {json.dumps(final)}")
    summary = {"ok": not failures, "survived": survived, "tried": tried, "restarts": restarts,
               "runs": campaigns, "iterations": len(ref_rows), "failures": failures,
               "work": str(work), **final}
    for f in failures:
        say(f"FAILURE: {f}")
    say(f"kills survived / tried: {survived} / {tried}")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    ap.add_argument("--iterations", type=int, default=4, help="iterations of the CI-sized config")
    ap.add_argument("--config", type=Path, help="experiment YAML instead of the CI-sized config")
    ap.add_argument("--work", type=Path, help="working directory (default: a new temp dir)")
    args = ap.parse_args(argv)
    config = None
    if args.config is not None:
        config = yaml.safe_load(args.config.read_text())
        config["iterations"] = args.iterations
    summary = run_harness(args.kills, args.seed, args.iterations, config, args.work)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
