"""Capsules fitted to a URDF's collision geometry (gps_ros.robot.capsules.fit_capsules) for the
fast camera of robots without a hand-fitted capsule file.  How the fitted capsules render against
TinyRenderer's meshes: tests/test_camera.py (``test_fitted_capsules_match_tiny``)."""
import math
import struct
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from gps_ros.config import load_config
from gps_ros.robot import capsules as C
from gps_ros.robot import load_description, package_share
from gps_ros.task import robot_description

CONFIG = Path(__file__).resolve().parents[1] / "config"
#: the shipped robots without a capsule file (the UR5 and SO-101 need example-robot-data)
FITTED = ("iiwa", "ur5", "so101")


def _description(name):
    if name in ("ur5", "so101") and package_share("example-robot-data") is None:
        pytest.skip("needs the example-robot-data wheel (pip install 'gps_ros[robots]')")
    return robot_description(load_config(CONFIG / f"{name}_reach.yaml").agent)


def _collision_links(desc):
    root = ET.fromstring(desc.urdf)
    return {ln.get("name") for ln in root.findall("link") if ln.find("collision") is not None}


@pytest.mark.parametrize("name", FITTED)
def test_fit_every_collision_link_deterministic_and_cached(name):
    """Every link with collision geometry gets 1-3 finite capsules (and no other link any); a
    fresh fit gives the same capsules bit for bit; a second call is the cached set; the colours
    follow the base / arm / hand rule; each link's capsules overlap its silhouettes well."""
    desc = _description(name)
    assert C.capsule_file(desc) is None  # fitted, not read from a file
    C._FIT_CACHE.clear()
    t0 = time.perf_counter()
    first = C.fit_capsules(desc)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert C.fit_capsules(desc) is first and C.robot_capsules(desc) is first
    assert time.perf_counter() - t0 < 0.01
    assert fit_s < 30.0  # ~0.4-0.8 s of CPU here; a gross regression only
    C._FIT_CACHE.clear()
    again = C.fit_capsules(desc)
    assert again is not first and again == first

    links = [c.link for c in first.capsules]
    assert set(links) == _collision_links(desc)
    counts = {ln: links.count(ln) for ln in set(links)}
    assert all(1 <= k <= C._MAX_PER_LINK for k in counts.values()), counts
    assert len(first.capsules) <= 3 * len(counts)
    for c in first.capsules:
        assert np.all(np.isfinite(c.a)) and np.all(np.isfinite(c.b)) and 0.0 < c.radius < 0.2, c
    assert first.radius_scale == C.FIT_RADIUS_SCALE

    colour = {c.link: c.rgb for c in first.capsules}
    base, hand = {
        "iiwa": (["lbr_iiwa_link_0"], ["lbr_iiwa_link_7"]),
        "ur5": (["base_link"], ["wrist_3_link", "ee_link"]),
        "so101": (["base_link"], ["gripper_link", "moving_jaw_so101_v1_link"]),
    }[name]
    for ln in colour:
        want = C.BASE_RGB if ln in base else C.HAND_RGB if ln in hand else C.ARM_RGB
        assert colour[ln] == want, (ln, colour[ln])

    # each link's capsules against its own silhouettes (7 orthographic views): the fit's objective,
    # measured 0.74-0.93 per link on these robots
    tris = C._collision_triangles(desc)
    for ln in counts:
        X = C._sample_surface(tris[ln], C._SAMPLES)
        caps = [(np.array(c.a), np.array(c.b), c.radius) for c in first.capsules if c.link == ln]
        assert C._Silhouettes(X).iou(caps) > 0.65, ln


# --- a URDF of primitives and a mesh -------------------------------------------------------------
def _write_binary_stl(path: Path, tris: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(b"\0" * 80 + struct.pack("<I", len(tris)))
        for t in tris:
            f.write(struct.pack("<3f", 0.0, 0.0, 0.0) + t.astype("<f4").tobytes() + b"\0\0")


def _write_ascii_stl(path: Path, tris: np.ndarray) -> None:
    lines = ["solid t"]
    for t in tris:
        lines += ["facet normal 0 0 0", "outer loop"] + [f"vertex {float(x)!r} {float(y)!r} {float(z)!r}" for x, y, z in t]
        lines += ["endloop", "endfacet"]
    path.write_text("\n".join(lines + ["endsolid t"]) + "\n")


def _write_obj(path: Path, tris: np.ndarray) -> None:
    v = tris.reshape(-1, 3)
    lines = [f"v {float(x)!r} {float(y)!r} {float(z)!r}" for x, y, z in v]
    lines += [f"f {3 * i + 1} {3 * i + 2} {3 * i + 3}" for i in range(len(tris))]
    path.write_text("\n".join(lines) + "\n")


def _urdf(links: dict, fixed_last: bool = False) -> str:
    """A serial chain link0 -> link1 -> ... of revolute joints (the last one fixed with
    ``fixed_last``); ``links``: name -> collision XML."""
    names = list(links)
    out = ['<robot name="t">']
    for ln in names:
        out.append(f'<link name="{ln}">{links[ln]}</link>')
    for i, (a, b) in enumerate(zip(names[:-1], names[1:])):
        kind = "fixed" if fixed_last and i == len(names) - 2 else "revolute"
        out.append(f'<joint name="j{i}" type="{kind}"><parent link="{a}"/><child link="{b}"/>'
                   f'<origin xyz="0 0 0.5"/><axis xyz="0 0 1"/>'
                   f'<limit lower="-3" upper="3" effort="10" velocity="2"/></joint>')
    out.append("</robot>")
    return "".join(out)


def _col(geometry: str, xyz="0 0 0", rpy="0 0 0") -> str:
    return f'<collision><origin xyz="{xyz}" rpy="{rpy}"/><geometry>{geometry}</geometry></collision>'


def _axis_len(c):
    """(unit axis, tip-to-tip length) of a capsule."""
    d = np.subtract(c.b, c.a)
    n = np.linalg.norm(d)
    return (d / n if n > 0 else d), n + 2 * c.radius


def test_fit_primitives_origins_and_mesh_scale(tmp_path):
    """Box, cylinder, sphere and capsule primitives and a scaled binary-STL mesh, each with an
    <origin>: one capsule each, placed, oriented and sized as the geometry is.  Colours: the root
    is the base, link4 (the rigid body of the EE link5, fixed to it) the hand."""
    box = np.array([[0.05, 0.01, 0.01]]) * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1)
                                                      for z in (-1, 1)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    bar = np.array([[box[q[0]], box[q[i]], box[q[i + 1]]] for q in quads for i in (1, 2)])
    _write_binary_stl(tmp_path / "bar.stl", bar)                      # 0.1 x 0.02 x 0.02 along x
    urdf = _urdf({
        "link0": _col('<box size="0.4 0.05 0.05"/>', xyz="0 0 0.1", rpy="0 0 1.5707963"),  # along y
        "link1": _col('<cylinder radius="0.03" length="0.3"/>', xyz="0.15 0 0", rpy="0 1.5707963 0"),
        "link2": _col('<sphere radius="0.05"/>', xyz="0 0 0.1"),
        "link3": _col('<capsule radius="0.02" length="0.2"/>', xyz="0 0.1 0", rpy="1.5707963 0 0"),
        "link4": _col(f'<mesh filename="{tmp_path / "bar.stl"}" scale="2 1 1"/>', xyz="0 0 0.05"),
        "link5": "",                      # no geometry: no capsule; fixed to link4, the hand
    }, fixed_last=True)
    desc = load_description(urdf, ee_link="link5")
    caps = C.fit_capsules(desc)
    by = {}
    for c in caps.capsules:
        by.setdefault(c.link, []).append(c)
    assert set(by) == {"link0", "link1", "link2", "link3", "link4"}
    assert by["link0"][0].rgb == C.BASE_RGB and by["link4"][0].rgb == C.HAND_RGB
    assert by["link1"][0].rgb == C.ARM_RGB
    one = {ln: v[0] for ln, v in by.items() if len(v) == 1}
    assert set(one) == set(by), {ln: len(v) for ln, v in by.items()}

    def check(ln, centre, axis, length, radius, tol=0.15):
        c = one[ln]
        mid = 0.5 * (np.array(c.a) + np.array(c.b))
        np.testing.assert_allclose(mid, centre, atol=0.01, err_msg=ln)
        u, L = _axis_len(c)
        if axis is not None:
            assert abs(u @ np.asarray(axis)) > 0.98, (ln, u)
        assert abs(L - length) < tol * length, (ln, L, length)
        assert abs(c.radius - radius) < tol * radius + 0.003, (ln, c.radius, radius)

    check("link0", [0, 0, 0.1], [0, 1, 0], 0.4, 0.025 * 1.25)        # a square bar's radius is
    check("link1", [0.15, 0, 0], [1, 0, 0], 0.3, 0.03)                # between its half side and
    check("link2", [0, 0, 0.1], None, 0.1, 0.05)                      # half diagonal
    check("link3", [0, 0.1, 0], [0, 1, 0], 0.24, 0.02)
    check("link4", [0, 0, 0.05], [1, 0, 0], 0.2, 0.01 * 1.25)


def test_mesh_readers_agree(tmp_path):
    """The numpy binary-STL reader and coal's assimp loader (ASCII STL, OBJ) give the same
    triangles for the same mesh (a shipped iiwa collision mesh)."""
    import pybullet_data

    src = Path(pybullet_data.getDataPath()) / "kuka_iiwa" / "meshes" / "link_2.stl"
    tris = C._read_binary_stl(src)
    assert tris is not None and tris.shape[1:] == (3, 3) and len(tris) > 100
    _write_ascii_stl(tmp_path / "m.stl", tris)
    _write_obj(tmp_path / "m.obj", tris)
    assert C._read_binary_stl(tmp_path / "m.stl") is None              # ASCII: left to assimp

    def key(t):
        area = 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
        return area.sum(), t.reshape(-1, 3).min(axis=0), t.reshape(-1, 3).max(axis=0), np.sort(t.mean(axis=1), axis=0)

    ref = key(tris)
    for f in ("m.stl", "m.obj"):
        got = C._read_mesh(tmp_path / f)
        assert got.shape == tris.shape, f
        for a, b in zip(key(got), ref):
            np.testing.assert_allclose(a, b, atol=1e-6, err_msg=f)


def test_bad_geometry_handled(tmp_path, caplog):
    """An unreadable mesh is skipped with a warning, degenerate geometry (a zero-size box, a flat
    box) gives capsules instead of errors, and a single-capsule fit that fails becomes the bounding
    capsule of the points."""
    (tmp_path / "junk.stl").write_bytes(b"not a mesh at all" * 10)
    urdf = _urdf({
        "link0": _col(f'<mesh filename="{tmp_path / "junk.stl"}"/>'),
        "link1": _col('<box size="0 0 0"/>'),
        "link2": _col('<box size="0.2 0.1 0"/>'),
        "link3": _col('<box size="0.1 0.1 0.1"/>') + _col(f'<mesh filename="{tmp_path / "junk.stl"}"/>'),
    })
    desc = load_description(urdf, ee_link="link3")
    with caplog.at_level("WARNING"):
        caps = C.fit_capsules(desc)
    assert "junk.stl" in caplog.text
    links = [c.link for c in caps.capsules]
    assert "link0" not in links and {"link1", "link2", "link3"} <= set(links)
    for c in caps.capsules:
        assert np.all(np.isfinite(c.a)) and np.all(np.isfinite(c.b)) and c.radius > 0
    flat = [c for c in caps.capsules if c.link == "link2"]
    assert max(_axis_len(c)[1] for c in flat) > 0.15                   # spans the plate

    # a fit that goes wrong (non-finite numbers) falls back to the bounding capsule
    X = np.random.default_rng(0).normal(size=(500, 3)) * [0.1, 0.02, 0.02]
    orig = C._fit_one
    try:
        C._fit_one = lambda P: (np.full(3, np.nan), np.zeros(3), 1.0)
        (a, b, r), = C._fit_link(X)
    finally:
        C._fit_one = orig
    ba = b - a
    t = np.clip((X - a) @ ba / (ba @ ba), 0, 1)
    assert np.all(np.linalg.norm(X - a - t[:, None] * ba, axis=1) <= r + 1e-12)
    assert abs(ba @ [1, 0, 0]) > 0.9 * np.linalg.norm(ba)             # along the long side
    # a handful of points, or all in one place
    assert len(C._fit_link(X[:3])) == 1 and len(C._fit_link(np.zeros((50, 3)))) == 1
    assert math.isfinite(C._fit_link(np.zeros((50, 3)))[0][2])
