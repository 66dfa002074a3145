"""Mutation score of the numerical core: how many small bugs planted in the code the tests catch.

    pip install mutmut==3.8.1
    python bench/mutation_score.py [--modules control/lqr.py cost.py ...] [--tests-from REV]
                                   [--show] [--jobs 2]

For each module, mutmut (https://mutmut.readthedocs.io) makes every mutant it knows (an operator,
a constant, a comparison, a call argument, a return value ... changed) and runs the module's unit
tests (``TESTS`` below; mutmut runs only the ones that execute the mutated function) against each.
A mutant is *killed* when a test fails, *survives* when they all pass, has *no tests* when no
selected test reaches it.  The score is killed / (all − equivalent): a mutant no test reaches
counts against it, and the only ones left out are the surviving mutants that a rule of
``EQUIVALENT`` matches (changes that cannot alter any result, each rule with its reason; ``--show``
lists them).  Per module it prints the counts, the score and
the surviving mutants (``--show``: their diffs).

Each module runs in its own copy of the package under ``--workdir`` (default a temp dir), so the
checkout is never touched.  ``--tests-from REV`` takes the tests/ directory of a git revision
instead of the working tree's (the score before a change to the tests).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "ros2_ws" / "src" / "gps_ros"

# module (relative to gps_ros/) -> its unit tests (relative to the package; pytest options such as
# --deselect pass through)
_CONTROL = ["tests/test_control.py", "tests/test_lin_gauss.py", "tests/test_lqr_dual.py",
            "tests/test_step_size.py", "tests/test_init_lqr.py", "tests/test_init_controllers.py"]
_TRAJ_OPT = ["tests/test_traj_opt.py", "tests/test_pi2_contract.py",
             "tests/test_pilqr_contract.py"]
_DYNAMICS = ["tests/test_dynamics.py", "tests/test_linear_gaussian_contract.py",
             "tests/test_gmm_contract.py", "tests/test_prior_contract.py",
             "tests/test_nn_prior_contract.py",
             "tests/test_trial_buffer.py", "tests/test_priors.py"]
TESTS = {
    "control/lin_gauss.py": _CONTROL + _TRAJ_OPT,
    "control/lqr.py": _CONTROL,
    "control/init.py": _CONTROL,
    "control/pi2.py": _TRAJ_OPT,
    "control/pilqr.py": _TRAJ_OPT,
    "dynamics/buffer.py": _DYNAMICS,
    "dynamics/gmm.py": _DYNAMICS,
    "dynamics/prior.py": _DYNAMICS,
    "dynamics/linear_gaussian.py": _DYNAMICS,
    "dynamics/nn_prior.py": _DYNAMICS,
    "dynamics/model_prior.py": ["tests/test_model_prior.py", "tests/test_model_prior_contract.py",
                                # the two CI trainings (12 s) add no kill the unit tests miss
                                "--deselect=tests/test_model_prior.py::test_training_with_the_"
                                "model_prior_pickles_and_resumes_exactly",
                                "--deselect=tests/test_model_prior.py::test_model_prior_reaches_"
                                "no_later_than_the_gmm_even_with_a_wrong_urdf"],
    "cost.py": ["tests/test_cost.py", "tests/test_cost_contract.py"],
    "algorithm.py": ["tests/test_step_size.py", "tests/test_iteration_bookkeeping.py",
                     "tests/test_traj_opt.py", "tests/test_mdgps.py",
                     "tests/test_numerical_stress.py"],
    "safety.py": ["tests/test_safety.py", "tests/test_safety_contract.py",
                  "tests/test_deploy_step.py"],
    # the node logic CI runs without ROS (not in the default set)
    "ros/sampler.py": ["tests/test_sampler_loop.py"],
}
DEFAULT = [m for m in TESTS if not m.startswith("ros/")]

# Equivalent mutants (no input can tell them from the original), left out of the score: each rule
# is (where: a substring of the mutant's name, or "" for anywhere; the predicate on the changed
# line (old, new); why).
def _einsum_case(old: str, new: str) -> bool:
    return "einsum(" in old and old != new and old.lower() == new.lower()


def _einsum_optimize(old: str, new: str) -> bool:
    def norm(x):
        return x.replace(" ", "").replace(",)", ")")
    return ("einsum(" in old and "optimize=True" in old
            and norm(new) in {norm(old.replace("optimize=True", v)) for v in
                              ("optimize=None", "optimize=False", "")})


def _last_axis_of_a_diagonal(old: str, new: str) -> bool:
    # np.diagonal of a (T, d, d) stack is (T, d): axis +1 is axis -1
    return "np.diagonal(" in old and ".sum(-1)" in old and new == old.replace(".sum(-1)", ".sum(+1)")


def _one_replaced(old: str, new: str, a: str, b: str) -> bool:
    """``new`` is ``old`` with one occurrence of ``a`` replaced by ``b``."""
    i = old.find(a)
    while i >= 0:
        if old[:i] + b + old[i + len(a):] == new:
            return True
        i = old.find(a, i + 1)
    return False


def _keyword_changed(keyword: str, value: str, call: str):
    """A predicate: on a line calling ``call``, only ``keyword=value`` changed (to another value,
    None, or dropped)."""
    def pred(old: str, new: str) -> bool:
        kw = f"{keyword}={value}"
        if call not in old or kw not in old or new == old:
            return False
        dropped = old.replace(kw, "").replace(" ", "").replace(",,", ",")
        return (new.replace(" ", "") == dropped
                or any(new == old.replace(kw, f"{keyword}={v}") for v in ("None", "True", "False")))
    return pred


EQUIVALENT = [
    ("", _einsum_case, "einsum subscripts in upper case name the same contraction"),
    ("", _einsum_optimize, "einsum's optimize only picks the contraction order"),
    ("", _last_axis_of_a_diagonal, "the diagonals of a (T, d, d) stack are (T, d): axis 1 is the "
     "last axis"),
    ("", lambda o, n: 'float("inf")' in o and n == o.replace('float("inf")', 'float("INF")'),
     'float() reads "INF" as "inf"'),
    ("x_ramp_weights", lambda o, n: o == "w[-1] *= fm" and n == "w[-1] = fm",
     "every ramp ends at weight 1, so scaling the last weight is setting it"),
    ("LinearGaussianControllerǁcopy", lambda o, n: "chol_pol_covar.copy(), self.inv_pol_covar.copy()"
     in o and ("None" in n or n.rstrip().endswith(", )")),
     "copy() hands over the derived Cholesky factor / inverse only to save their recomputation; "
     "without them the constructor derives the same values"),
    ("LinearGaussianControllerǁ__post_init__", lambda o, n: "np.asarray(self.pol_covar, dtype=np.float64)"
     in o, "the covariance goes through 0.5 (A + Aᵀ) next, which is float64 for any numeric input"),
    ("x__batched_cho_solve", _keyword_changed("check_finite", "False", "sla.cho_"),
     "the fit hands the solver finite matrices only (it refuses non-finite trials and priors): "
     "check_finite only adds a check that they are"),
    ("x__batched_cho_solve", _keyword_changed("lower", "True", "sla.cho_factor("),
     "cho_factor returns (factor, lower) and cho_solve uses the triangle it names: the same "
     "solution"),
    ("x__batched_cho_solve", _keyword_changed("dtype", "np.float64", "np.empty("),
     "float64 is np.empty's default dtype"),
    ("LinearGaussianDynamicsǁfrom_arrays", _keyword_changed("dtype", "np.float64", "np.array("),
     "the constructor converts every array to float64 next"),
    ("", lambda o, n: ".reshape(" in o and (_one_replaced(o, n, ", -1)", ", -2)")
                                          or _one_replaced(o, n, ".reshape(-1", ".reshape(-2")),
     "numpy's reshape infers any negative size, -2 as -1"),
    ("", lambda o, n: 'float("nan")' in o and n == o.replace('float("nan")', 'float("NAN")'),
     'float() reads "NAN" as "nan"'),
    ("model_prior.xǁModelStepǁ_step", lambda o, n: o.startswith("J[:, idx, idx] += 1.0")
     and n.startswith("J[:, idx, idx] = 1.0"), "the EE-point columns of J are zero before (Jq "
     "fills the joint and command columns only)"),
    ("model_prior.xǁModelStepǁ", lambda o, n: "_joint_step(" in o and ", False)" in o
     and n == o.replace(", False)", ", None)"), "jac is only tested for truth: None is False"),
    ("model_prior.xǁModelStepǁ__call__", lambda o, n: "jac=False" in o
     and n in (o.replace("jac=False", "jac=True"), o.replace("jac=False", "jac=None")),
     "f is computed by the same lines with the Jacobian (and None is False); __call__ drops "
     "the Jacobian"),
    ("gmm.x", lambda o, n: "shape[-1]" in o and n in (o.replace("shape[-1]", "shape[-2]"),
                                                      o.replace("shape[-1]", "shape[+1]"))
     and ("d = S.shape" in o or "np.eye(L.shape" in o),
     "the last two axes of a (K, d, d) stack of covariances or factors are both d"),
    ("gmm.xǁGMMǁupdate", lambda o, n: o.startswith("resp, lse, ll_std = first if it == 0")
     and "and False" in n, "the first E-step is recomputed from the same parameters: the same "
     "numbers"),
    ("gmm.xǁGMMǁupdate", lambda o, n: o == "reseeded = False" and n in ("reseeded = None",
                                                                        "reseeded = True"),
     "the first value of reseeded is never read (no convergence check before a previous "
     "log-likelihood exists)"),
    ("gmm.xǁGMMǁupdate", lambda o, n: o.startswith("self._gcov = self._global_cov(Z) if "
                                                   "self.cov_prior > 0.0")
     and ("or True" in n or ">= 0.0" in n), "the global covariance is only read with cov_prior > 0"),
    ("gmm.x", _keyword_changed("dtype", "np.float64", "np.asarray("),
     "integer points become float64 in the next arithmetic ((x - c) / s, the mean): the same "
     "numbers"),
    ("gmm.x__tri_inv_lower", _keyword_changed("check_finite", "False", "solve_triangular("),
     "the factors come from Cholesky of finite covariances: check_finite only adds a check"),
    ("prior.xǁDynamicsPriorGMMǁn_clusters", lambda o, n: "n_points // self" in o
     and n == o.replace("//", "/"), "int() of a non-negative quotient is its floor"),
    ("", lambda o, n: ("np.concatenate(" in o or o.startswith("for ")) and "], axis=0)" in o
     and n == o.replace("], axis=0)", "], )"), "np.concatenate's default axis is 0"),
    ("prior.xǁDynamicsPriorGMMǁeval", _keyword_changed("dtype", "np.float64", "np.asarray("),
     "the GMM's inference converts the points to float64 next"),
]


def equivalent_reason(name: str, diff: str):
    """The reason a mutant is equivalent (by :data:`EQUIVALENT`), else None."""
    old = [l[1:] for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
    new = [l[1:] for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
    if len(old) != 1 or len(new) != 1:
        return None
    for where, pred, why in EQUIVALENT:
        if where in name and pred(old[0].strip(), new[0].strip()):
            return why
    return None


def _prepare(work: Path, module: str, tests_from: str | None) -> None:
    for part in ("gps_ros", "config", "robots", "setup.py"):
        src = PKG / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / part)
    if tests_from:
        (work / "tests").mkdir()
        out = subprocess.run(["git", "archive", tests_from, "."], cwd=PKG / "tests", check=True,
                             capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(work / "tests")], input=out, check=True)
    else:
        shutil.copytree(PKG / "tests", work / "tests")
    for d in work.rglob("__pycache__"):
        shutil.rmtree(d)
    tests = [t for t in TESTS[module] if t.startswith("-") or (work / t).exists()]
    sel = "\n    ".join(tests)
    (work / "setup.cfg").write_text(
        "[mutmut]\nsource_paths=gps_ros\n"
        f"only_mutate=gps_ros/{module}\n"
        f"pytest_add_cli_args_test_selection={sel}\n"
        "also_copy=config\n    robots\n")


def run_module(module: str, root: Path, jobs: int, tests_from: str | None, show: bool) -> dict:
    work = root / module.replace("/", "_").removesuffix(".py")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _prepare(work, module, tests_from)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLBACKEND="Agg")
    mutmut = [sys.executable, "-m", "mutmut"]
    t0 = time.perf_counter()
    run = subprocess.run(mutmut + ["run", "--max-children", str(jobs)], cwd=work, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        tail = (run.stdout + run.stderr)[-2000:]
        raise SystemExit(f"mutmut failed on {module} (exit {run.returncode}):\n{tail}")
    subprocess.run(mutmut + ["export-cicd-stats"], cwd=work, env=env, check=True,
                   capture_output=True)
    stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
    res = subprocess.run(mutmut + ["results", "--all", "true"], cwd=work, env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:        # older mutmut: no --all
        res = subprocess.run(mutmut + ["results"], cwd=work, env=env, capture_output=True,
                             text=True)
    status = {}
    for line in res.stdout.splitlines():
        name, _, st = line.strip().rpartition(": ")
        if name:
            status[name] = st
    diffs, equivalent = {}, {}
    for n, st in status.items():
        if st in ("survived", "no tests"):
            diffs[n] = subprocess.run(mutmut + ["show", n], cwd=work, env=env, capture_output=True,
                                      text=True).stdout
            why = equivalent_reason(n, diffs[n])
            if why:
                equivalent[n] = why
    bad = sorted(n for n in diffs if n not in equivalent)
    counted = stats["total"] - stats.get("skipped", 0) - len(equivalent)
    killed = stats["killed"] + stats.get("timeout", 0) + stats.get("segfault", 0)
    out = dict(module=module, total=stats["total"], killed=killed, survived=stats["survived"],
               no_tests=stats["no_tests"], equivalent=len(equivalent),
               score=killed / counted if counted else float("nan"), wall_s=round(wall, 1),
               surviving=bad)
    print(f"{module:30s} {out['total']:5d} mutants  killed {killed:5d}  survived "
          f"{out['survived']:4d}  no tests {out['no_tests']:4d}  equivalent {len(equivalent):3d}  "
          f"score {100 * out['score']:5.1f} %  ({wall:.0f} s)", flush=True)
    for n in bad:
        print(f"    {status[n]:9s} {n}")
        if show:
            lines = [l for l in diffs[n].splitlines() if l[:1] in "-+" and l[:3] not in ("---", "+++")]
            print("        " + "\n        ".join(lines))
    if show:
        for n, why in sorted(equivalent.items()):
            print(f"    equivalent {n}: {why}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modules", nargs="+", default=DEFAULT, choices=list(TESTS),
                    metavar="MODULE", help="modules under gps_ros/ (default: the numerical core; "
                    "also ros/sampler.py)")
    ap.add_argument("--tests-from", default=None, metavar="REV",
                    help="take tests/ from this git revision (default: the working tree)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=2, help="mutants run in parallel")
    ap.add_argument("--show", action="store_true", help="print each surviving mutant's diff")
    ap.add_argument("--json", type=Path, default=None, help="write the per-module results here")
    args = ap.parse_args(argv)
    try:
        import mutmut  # noqa: F401
    except ImportError:
        raise SystemExit("mutmut is not installed: pip install mutmut==3.8.1")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="gps_ros_mutants_"))
    print(f"mutmut over {len(args.modules)} modules in {root}"
          + (f", tests from {args.tests_from}" if args.tests_from else ""), flush=True)
    results = [run_module(m, root, args.jobs, args.tests_from, args.show) for m in args.modules]
    killed = sum(r["killed"] for r in results)
    counted = sum(r["total"] - r["equivalent"] for r in results)
    print(f"{'all':30s} {counted:5d} mutants  killed {killed:5d}  score "
          f"{100 * killed / max(counted, 1):5.1f} %")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
