"""msg <-> numpy round trips on plain stand-ins (no ROS), interface files, and that the ROS code
compiles without rclpy."""
from conftest import sim_limits
import array
import copy
import py_compile
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gps_ros.control import LinearGaussianController
from gps_ros.control.lqr import LQRResult, QuadraticCost
from gps_ros.dynamics.linear_gaussian import LinearGaussianDynamics
from gps_ros.ros import convert
from gps_ros.ros.convert import PlainTypes as P, ShapeError
from gps_ros.sample import TrialMeta, Trajectories

PKG = Path(__file__).resolve().parents[1]
MSGS = PKG.parent / "gps_msgs"


def random_controller(rng, T=4, dU=2, dX=3):
    A = rng.standard_normal((T, dU, dU))
    cov = A @ np.swapaxes(A, -1, -2) + 0.5 * np.eye(dU)
    return LinearGaussianController(rng.standard_normal((T, dU, dX)), rng.standard_normal((T, dU)), cov)


def test_pack_unpack():
    a = np.arange(24.0).reshape(2, 3, 4)
    flat = convert.pack(a)
    assert isinstance(flat, array.array) and flat.typecode == "d"
    assert list(flat[:5]) == [0, 1, 2, 3, 4]                  # row-major
    np.testing.assert_array_equal(convert.unpack(flat, (2, 3, 4)), a)
    np.testing.assert_array_equal(convert.unpack(list(flat), (2, 3, 4)), a)
    with pytest.raises(ShapeError, match=r"X.gain has 24 values, expected 2 \* 3 \* 5 = 30"):
        convert.unpack(flat, (2, 3, 5), "X.gain")
    assert convert.unpack_optional([], (2, 2), "x") is None


def test_controller_round_trip():
    rng = np.random.default_rng(0)
    c = random_controller(rng)
    x_ref, u_ref = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    msg = convert.controller_to_msg(c, P.LinearGaussianController(), x_ref, u_ref)
    assert (msg.horizon, msg.dx, msg.du) == (4, 3, 2)
    c2 = convert.controller_from_msg(msg)
    np.testing.assert_array_equal(c2.K, c.K)
    np.testing.assert_array_equal(c2.k, c.k)
    np.testing.assert_array_equal(c2.chol_pol_covar, c.chol_pol_covar)
    np.testing.assert_allclose(c2.pol_covar, c.pol_covar, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c2.inv_pol_covar, c.inv_pol_covar, rtol=1e-9)
    xr, ur = convert.controller_reference_from_msg(msg)
    np.testing.assert_array_equal(xr, x_ref)
    np.testing.assert_array_equal(ur, u_ref)
    # no reference: empty arrays
    msg = convert.controller_to_msg(c, P.LinearGaussianController())
    assert convert.controller_reference_from_msg(msg) == (None, None)
    # same actions
    x, n = rng.standard_normal(3), rng.standard_normal(2)
    np.testing.assert_allclose(c2.act(1, x, n), c.act(1, x, n))


def test_controller_errors():
    rng = np.random.default_rng(1)
    c = random_controller(rng)
    msg = convert.controller_to_msg(c, P.LinearGaussianController())
    msg.gain = msg.gain[:-1]
    with pytest.raises(ShapeError, match="LinearGaussianController.gain has 23 values"):
        convert.controller_from_msg(msg)
    msg = convert.controller_to_msg(c, P.LinearGaussianController())
    L = convert.unpack(msg.covariance_cholesky, (4, 2, 2))
    L[0, 0, 1] = 1.0
    msg.covariance_cholesky = convert.pack(L)
    with pytest.raises(ShapeError, match="lower triangular"):
        convert.controller_from_msg(msg)
    msg = convert.controller_to_msg(c, P.LinearGaussianController())
    msg.horizon = 0
    with pytest.raises(ShapeError, match="horizon"):
        convert.controller_from_msg(msg)
    with pytest.raises(ShapeError, match="x_ref"):
        convert.controller_to_msg(c, P.LinearGaussianController(), x_ref=np.zeros((3, 3)))


def test_dynamics_cost_lqr_round_trip():
    rng = np.random.default_rng(2)
    T, dX, dU = 3, 4, 2
    S = rng.standard_normal((dX, dX))
    d = LinearGaussianDynamics(rng.standard_normal((T, dX, dX + dU)), rng.standard_normal((T, dX)),
                               np.broadcast_to(S @ S.T, (T, dX, dX)).copy(), rng.standard_normal(dX),
                               S @ S.T + np.eye(dX))
    d2 = convert.dynamics_from_msg(convert.dynamics_to_msg(d, P.LinearGaussianDynamics()))
    for k in ("Fm", "fv", "dyn_covar", "x0mu", "x0sigma"):
        np.testing.assert_array_equal(getattr(d2, k), getattr(d, k))
    n = dX + dU
    cost = QuadraticCost(rng.standard_normal((T, n, n)), rng.standard_normal((T, n)), rng.standard_normal(T))
    c2 = convert.cost_from_msg(convert.cost_to_msg(cost, P.QuadraticCost()))
    for k in ("Cm", "cv", "cc"):
        np.testing.assert_array_equal(getattr(c2, k), getattr(cost, k))
    res = LQRResult(random_controller(rng, T, dU, dX), 2.5, 0.3, 0.4, True, 7,
                    rng.standard_normal((T, n)), rng.standard_normal((T, n, n)))
    r2 = convert.lqr_result_from_msg(convert.lqr_result_to_msg(res, P.LQRSolution()))
    assert (r2.eta, r2.kl, r2.epsilon, r2.converged, r2.iterations) == (2.5, 0.3, 0.4, True, 7)
    np.testing.assert_array_equal(r2.mu, res.mu)
    np.testing.assert_array_equal(r2.sigma, res.sigma)
    np.testing.assert_array_equal(r2.controller.K, res.controller.K)
    bad = convert.dynamics_to_msg(d, P.LinearGaussianDynamics())
    bad.du = 3
    with pytest.raises(ShapeError, match="LinearGaussianDynamics.fm"):
        convert.dynamics_from_msg(bad)


def test_trial_round_trip_with_images():
    rng = np.random.default_rng(3)
    T, dX, dU = 5, 4, 2
    X, U = rng.standard_normal((T, dX)), rng.standard_normal((T, dU))
    imgs = rng.integers(0, 256, (T, 6, 8, 3), dtype=np.uint8)
    meta = TrialMeta(condition=3, seed=2**63 + 5, discarded=True, reason="e-stop", source="policy")
    stamps = np.arange(T) * 0.002 + 12.5
    msg = convert.trial_to_msg(X, U, meta, P.Trajectory(), P, stamps=stamps, images=imgs)
    assert msg.images[0].encoding == "rgb8" and msg.images[0].step == 24
    X2, U2, m2, i2 = convert.trial_from_msg(msg)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(U2, U)
    np.testing.assert_array_equal(i2, imgs)
    assert m2 == meta
    np.testing.assert_allclose([convert.time_to_seconds(s) for s in msg.stamps], stamps, atol=1e-9)
    # without seed or images
    meta = TrialMeta(condition=0)
    X2, U2, m2, i2 = convert.trial_from_msg(convert.trial_to_msg(X, U, meta, P.Trajectory()))
    assert m2.seed is None and i2 is None and not m2.discarded


def test_bgr_image_and_errors():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = convert.image_to_msg(img, P.Image())
    msg.encoding = "bgr8"
    np.testing.assert_array_equal(convert.image_from_msg(msg), img[..., ::-1])
    msg.encoding = "mono16"
    with pytest.raises(ShapeError, match="encoding"):
        convert.image_from_msg(msg)
    with pytest.raises(ShapeError, match="uint8"):
        convert.image_to_msg(img.astype(float), P.Image())


def test_trajectories_round_trip_and_split():
    rng = np.random.default_rng(4)
    tr = Trajectories(rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 2)),
                      [TrialMeta(condition=1, seed=i) for i in range(3)],
                      {"image": rng.integers(0, 255, (3, 4, 2, 2, 3), dtype=np.uint8)})
    msgs = convert.trajectories_to_msgs(tr, P)
    tr2 = convert.msgs_to_trajectories(msgs)
    np.testing.assert_array_equal(tr2.X, tr.X)
    np.testing.assert_array_equal(tr2.obs["image"], tr.obs["image"])
    assert tr2.meta == tr.meta
    msgs[0].condition = 0
    parts = convert.split_by_condition(msgs, 2)
    assert [p.N for p in parts] == [1, 2]
    with pytest.raises(ShapeError, match="no trajectories for condition 2"):
        convert.split_by_condition(msgs, 3)
    msgs[1].condition = 7
    with pytest.raises(ShapeError, match="out of range"):
        convert.split_by_condition(msgs, 2)


def test_joint_order_and_commands():
    jo = convert.JointOrder(["a", "b", "c"])
    js = SimpleNamespace(name=["c", "x", "a", "b"], position=[3.0, 9.0, 1.0, 2.0],
                         velocity=[30.0, 90.0, 10.0, 20.0])
    q, qd = jo.extract(js)
    np.testing.assert_array_equal(q, [1, 2, 3])
    np.testing.assert_array_equal(qd, [10, 20, 30])
    js.velocity = []
    assert jo.extract(js)[1] is None
    with pytest.raises(ShapeError, match=r"lacks joints \['c'\]"):
        jo.extract(SimpleNamespace(name=["a", "b"], position=[0, 0], velocity=[]))
    msg = convert.command_to_msg(np.array([1.0, 2.0]), SimpleNamespace(data=None))
    np.testing.assert_array_equal(convert.command_from_msg(msg, 2), [1, 2])


def test_run_trial_goal():
    rng = np.random.default_rng(5)
    c = random_controller(rng)
    noise = rng.standard_normal((4, 2))
    g = convert.run_trial_goal(P.RunTrialGoal(), 1, 4, noise, 2**64 + 3, controller=c)
    assert g.source == P.RunTrialGoal.SOURCE_CONTROLLER and g.noise_seed == 3
    np.testing.assert_array_equal(convert.unpack(g.noise, (4, 2)), noise)
    g = convert.run_trial_goal(P.RunTrialGoal(), 1, 4, None, 0, policy_checkpoint="/p.pt",
                               policy_chol=np.eye(2))
    assert g.source == P.RunTrialGoal.SOURCE_POLICY and len(g.noise) == 0
    with pytest.raises(ValueError, match="exactly one"):
        convert.run_trial_goal(P.RunTrialGoal(), 1, 4, None, 0)
    with pytest.raises(ShapeError, match="horizon"):
        convert.run_trial_goal(P.RunTrialGoal(), 1, 5, None, 0, controller=c)


# --- interface files ---------------------------------------------------------------------------
PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
              "int32", "uint32", "int64", "uint64", "string", "wstring"}
FIELD = re.compile(r"^(?P<type>[A-Za-z][A-Za-z0-9_]*(/[A-Z][A-Za-z0-9]*)?)(?P<arr>\[\d*\])?\s+"
                   r"(?P<name>[A-Za-z][A-Za-z0-9_]*)(\s*=\s*(?P<const>\S.*?))?(\s+\S.*)?$")


def _interface_lines(path):
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            yield line


def _check_interface(path, sections):
    local = {p.stem for p in (MSGS / "msg").glob("*.msg")}
    parts = [[]]
    for line in _interface_lines(path):
        if line == "---":
            parts.append([])
            continue
        m = FIELD.match(line)
        assert m, f"{path.name}: bad line {line!r}"
        name, typ = m.group("name"), m.group("type")
        base = m.group("type").split("/")[-1]
        assert "__" not in name and not name.endswith("_"), f"{path.name}: bad name {name}"
        if m.group("const") is not None:
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{path.name}: constant {name!r}"
            assert typ in PRIMITIVES, f"{path.name}: constant of non-primitive type {line!r}"
        else:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", name), f"{path.name}: field {name!r}"
            assert typ in PRIMITIVES or "/" in typ or base in local, \
                f"{path.name}: unknown type {typ!r}"
        parts[-1].append(name)
    assert len(parts) == sections, f"{path.name}: {len(parts)} sections, expected {sections}"
    for p in parts:
        assert len(p) == len(set(p)), f"{path.name}: duplicate field names"


def test_interface_files_parse():
    files = {**{p: 1 for p in (MSGS / "msg").glob("*.msg")}, **{p: 2 for p in (MSGS / "srv").glob("*.srv")},
             **{p: 3 for p in (MSGS / "action").glob("*.action")}}
    assert len(files) >= 10
    cmake = (MSGS / "CMakeLists.txt").read_text()
    for path, sections in files.items():
        _check_interface(path, sections)
        assert f'"{path.parent.name}/{path.name}"' in cmake, f"{path.name} not in CMakeLists.txt"
    pkg = (MSGS / "package.xml").read_text()
    assert "<member_of_group>rosidl_interface_packages</member_of_group>" in pkg
    assert "rosidl_default_generators" in pkg


def test_constants_are_fields_of_the_goal():
    text = (MSGS / "action" / "RunTrial.action").read_text()
    assert "uint8 SOURCE_CONTROLLER=0" in text and "uint8 SOURCE_POLICY=1" in text


def test_ros_code_compiles_without_rclpy(tmp_path):
    files = sorted((PKG / "gps_ros" / "ros").glob("*.py")) + sorted((PKG / "launch").glob("*.py"))
    assert any(f.name == "train.launch.py" for f in files)
    for f in files:
        py_compile.compile(str(f), cfile=str(tmp_path / (f.name + "c")), doraise=True)


def test_logic_modules_import_without_rclpy():
    """Everything the nodes use that needs no rclpy imports without it (a fresh interpreter, so
    that no other test's import counts); the launch plan too."""
    import subprocess

    mods = ["gps_ros.ros.common", "gps_ros.ros.convert", "gps_ros.ros.proxies", "gps_ros.ros.trial",
            "gps_ros.ros.coordinator", "gps_ros.ros.clients", "gps_ros.launch_plan"]
    code = (f"import sys; import {', '.join(mods)}; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'launch', 'launch_ros')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PKG)


def test_node_modules_are_plain_node_classes():
    """Each node module is a top-level rclpy Node subclass plus main(), as in ros2/examples
    (checked on the source: importing them needs ROS 2)."""
    import ast

    nodes = sorted((PKG / "gps_ros" / "ros").glob("*_node.py"))
    assert len(nodes) == 7
    for f in nodes:
        tree = ast.parse(f.read_text())
        classes = [c for c in tree.body if isinstance(c, ast.ClassDef)
                   and any(getattr(b, "id", None) == "Node" for b in c.bases)]
        assert len(classes) == 1, f.name
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), f.name
        imported = {a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "rclpy.node"
                    for a in n.names}
        assert "Node" in imported, f.name
        assert "_define" not in f.read_text(), f.name


# --- camera frames written to disk by the sampler (Trajectory.image_paths) ------------------------
PANDA_HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


def recorded_trial(seed, T=4, H=6, W=8, condition=1):
    """A TrialRecorder (the sampler's logic) that recorded T random camera frames."""
    from gps_ros.ros.trial import TrialRecorder
    from gps_ros.safety import JointStateSample, SafetyFilter

    dX, dU = 14, 7
    ctrl = LinearGaussianController(np.zeros((T, dU, dX)), np.zeros((T, dU)),
                                    np.broadcast_to(np.eye(dU), (T, dU, dU)).copy())
    rec = TrialRecorder(ctrl, condition, T, dX, dU, np.zeros((T, dU)),
                        SafetyFilter(sim_limits()), seed=seed, record_images=True)
    frames = np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    x = np.r_[PANDA_HOME, np.zeros(7)]
    for t in range(T):
        rec.step(x, JointStateSample(PANDA_HOME, np.zeros(7), float(t)), float(t), frames[t])
    return rec, frames


def test_trial_images_on_disk_round_trip(tmp_path):
    recs = [recorded_trial(seed) for seed in range(3)]
    msgs = [rec.result(P.Trajectory(), P, image_dir=tmp_path / "images") for rec, _ in recs]
    assert all(len(m.images) == 0 and len(m.image_paths) == 1 for m in msgs)
    frames = np.stack([f for _, f in recs])
    tr = convert.msgs_to_trajectories(msgs)
    np.testing.assert_array_equal(tr.obs["image"], frames)
    X, U, meta, imgs = convert.trial_from_msg(msgs[1])
    np.testing.assert_array_equal(imgs, frames[1])
    assert list(meta.image_paths) == list(msgs[1].image_paths)
    # forwarding (coordinator -> trainer) re-sends the paths, not megabytes of frames, also after
    # selecting trials; without an image key (fit_dynamics) neither frames nor paths travel
    sub = tr.take([2, 0])
    fwd = convert.trajectories_to_msgs(sub, P)
    assert [list(m.image_paths) for m in fwd] == [list(msgs[2].image_paths), list(msgs[0].image_paths)]
    assert all(len(m.images) == 0 for m in fwd)
    np.testing.assert_array_equal(convert.msgs_to_trajectories(fwd).obs["image"], frames[[2, 0]])
    blind = convert.trajectories_to_msgs(tr, P, image_key=None)
    assert all(len(m.images) == 0 and len(m.image_paths) == 0 for m in blind)
    # the paths survive Trajectories.save / load (the iteration's trials file)
    tr.save(tmp_path / "trials.npz")
    assert Trajectories.load(tmp_path / "trials.npz").meta == tr.meta
    # one file per step is read as well
    per_step = []
    for t in range(4):
        np.save(tmp_path / f"f{t}.npy", frames[0, t])
        per_step.append(str(tmp_path / f"f{t}.npy"))
    m = convert.trial_to_msg(X, U, TrialMeta(condition=1), P.Trajectory(), P, image_paths=per_step)
    np.testing.assert_array_equal(convert.trial_from_msg(m)[3], frames[0])


def test_trial_image_file_errors(tmp_path):
    rec, frames = recorded_trial(0)
    msg = rec.result(P.Trajectory(), P, image_dir=tmp_path)
    path = msg.image_paths[0]

    def fails(m, *match):
        with pytest.raises(ShapeError) as err:
            convert.trial_from_msg(m)
        text = str(err.value)
        assert "\n" not in text
        for s in match:
            assert s in text, text

    missing = copy.deepcopy(msg)
    missing.image_paths = [str(tmp_path / "gone.npz")]
    fails(missing, "gone.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    junk = copy.deepcopy(msg)
    junk.image_paths = [str(tmp_path / "junk.npz")]
    fails(junk, "junk.npz")
    np.savez(tmp_path / "short.npz", image=frames[:3])
    short = copy.deepcopy(msg)
    short.image_paths = [str(tmp_path / "short.npz")]
    fails(short, "short.npz", "(3, 6, 8, 3)", "T=4")
    np.savez(tmp_path / "float.npz", image=frames.astype(np.float32))
    wrong_type = copy.deepcopy(msg)
    wrong_type.image_paths = [str(tmp_path / "float.npz")]
    fails(wrong_type, "float.npz", "uint8")
    two = copy.deepcopy(msg)
    two.image_paths = [path, path]
    fails(two, "2 image_paths", "horizon 4")
    both = copy.deepcopy(msg)
    convert.trial_to_msg(rec.X, rec.U, rec.meta, both, P, images=frames)
    both.image_paths = [path]
    fails(both, "both")


def test_trials_with_and_without_images_do_not_silently_lose_the_frames(tmp_path):
    rng = np.random.default_rng(5)
    T = 4
    with_img = [convert.trial_to_msg(rng.standard_normal((T, 3)), rng.standard_normal((T, 2)),
                                     TrialMeta(condition=0), P.Trajectory(), P,
                                     images=rng.integers(0, 256, (T, 2, 2, 3), dtype=np.uint8))
                for _ in range(2)]
    bare = convert.trial_to_msg(rng.standard_normal((T, 3)), rng.standard_normal((T, 2)),
                                TrialMeta(condition=0), P.Trajectory(), P)
    with pytest.raises(ShapeError, match=r"trial 2 .*no camera frames"):
        convert.msgs_to_trajectories(with_img + [bare])
    # a discarded trial without frames (aborted early) gets blank frames: it is never trained on
    bare.discarded, bare.reason = True, "cancelled"
    tr = convert.msgs_to_trajectories(with_img + [bare])
    assert tr.obs["image"].shape == (3, T, 2, 2, 3) and not tr.obs["image"][2].any()
    # images were asked for (a vision policy) but none came back
    bare.discarded = False
    assert "image" not in convert.msgs_to_trajectories([bare]).obs
    with pytest.raises(ShapeError, match="no camera frames"):
        convert.msgs_to_trajectories([bare], require_images=True)
