"""The fixed camera (gps_ros.sim.camera): fast numpy ray caster against PyBullet's TinyRenderer."""
import numpy as np
import pybullet as p
import pytest

from conftest import small_config_dict
from gps_ros.config import parse_config
from gps_ros.sim.camera import SEG_ARM, SEG_OBJECT, Camera, CameraConfig, draw_points
from gps_ros.sim.arm import ArmSim, SceneConfig


@pytest.fixture(scope="module")
def scene_sim():
    cfg = parse_config(small_config_dict(), "test")
    sim = ArmSim(cfg.agent, scene=SceneConfig())
    yield sim
    sim.close()


def _set_arm(sim, q):
    for j, v in enumerate(q):
        p.resetJointState(sim.robot, j, float(v), 0.0, physicsClientId=sim.physics_client)


def test_shape_dtype_and_config(scene_sim):
    scene_sim.reset(0)
    for w, h in ((64, 64), (96, 48)):
        for renderer in ("fast", "tiny"):
            img = Camera(width=w, height=h, renderer=renderer).render(scene_sim)
            assert img.shape == (h, w, 3) and img.dtype == np.uint8
    img = scene_sim.render()  # the sim's hook: default 64x64 fast camera
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    with pytest.raises(ValueError):
        CameraConfig(renderer="opengl")
    with pytest.raises(ValueError):
        CameraConfig(width=0)


def test_fast_render_deterministic(scene_sim):
    scene_sim.reset(1)
    cam = Camera(width=64, height=64)
    assert np.array_equal(cam.render(scene_sim), cam.render(scene_sim))


@pytest.mark.parametrize("renderer", ["fast", "tiny"])
def test_object_pixels_at_projection(scene_sim, renderer):
    """The red object's pixels are centred on the projection of the condition's target."""
    cam = Camera(width=64, height=64, renderer=renderer)
    centres = []
    for cond in (0, 1):
        scene_sim.reset(cond)
        img, mask = cam.render(scene_sim, return_mask=True)
        # by colour: strongly red pixels
        r, g, b = (img[..., i].astype(int) for i in range(3))
        red = (r > 100) & (r > 2 * g + 20) & (r > 2 * b + 20)
        rows, cols = np.nonzero(red)
        assert rows.size >= 4, f"object not visible for condition {cond}"
        uv = cam.project(scene_sim.target)
        assert abs(cols.mean() - uv[0]) < 2.0 and abs(rows.mean() - uv[1]) < 2.0, (cols.mean(), rows.mean(), uv)
        assert np.array_equal(red, mask == SEG_OBJECT) or renderer == "tiny"
        centres.append(uv)
    assert np.linalg.norm(centres[0] - centres[1]) > 5.0  # the two targets are apart in the image


def test_project_matches_pybullet_convention():
    cam = Camera(width=64, height=48)
    # the look-at target is the image centre
    uv = cam.project(np.array(cam.cfg.target))
    np.testing.assert_allclose(uv, [31.5, 23.5], atol=1e-9)
    # a point behind the camera is NaN; batches keep their shape
    behind = cam.eye + (cam.eye - np.array(cam.cfg.target))
    out = cam.project(np.stack([np.array(cam.cfg.target), behind]))
    assert out.shape == (2, 2) and np.isnan(out[1]).all()
    marked = draw_points(np.zeros((48, 64, 3), np.uint8), uv[None] + 0.3, color=(0, 255, 0))
    assert tuple(marked[24, 32]) == (0, 255, 0) and marked.sum() == 255


def test_fast_silhouette_matches_tiny(scene_sim):
    """Arm silhouettes of the capsule model and the full meshes overlap (IoU > 0.6)."""
    scene_sim.reset(0)
    fast = Camera(width=64, height=64)
    tiny = Camera(width=64, height=64, renderer="tiny")
    rng = np.random.default_rng(0)
    q0 = np.asarray(scene_sim.cfg.start_joint_positions)
    ious = []
    try:
        for q in [q0] + [q0 + rng.normal(0.0, 0.4, 7) for _ in range(2)]:
            _set_arm(scene_sim, q)
            a = fast.segment(scene_sim) == SEG_ARM
            b = tiny.segment(scene_sim) == SEG_ARM
            ious.append((a & b).sum() / (a | b).sum())
    finally:
        scene_sim.reset(0)
    assert min(ious) > 0.6, ious


def test_moving_the_arm_changes_the_image(scene_sim):
    scene_sim.reset(0)
    cam = Camera(width=64, height=64)
    before = cam.render(scene_sim)
    ee_before = cam.project(scene_sim.ee_pose()[0])
    for _ in range(10):
        scene_sim.step(np.array([20.0, -20.0, 0.0, 10.0, 0.0, 0.0, 0.0]))
    after = cam.render(scene_sim)
    ee_after = cam.project(scene_sim.ee_pose()[0])
    changed = np.any(before != after, axis=-1).sum()
    assert changed > 30, changed
    assert np.linalg.norm(ee_after - ee_before) > 1.0
    scene_sim.reset(0)
    np.testing.assert_array_equal(cam.render(scene_sim), before)


def test_scene_is_visual_only(small_cfg):
    """The scene bodies do not change the dynamics (and keep the default gravity mode usable)."""
    u = np.array([5.0, -3.0, 2.0, 4.0, 1.0, -1.0, 0.5])
    with ArmSim(small_cfg.agent) as plain, ArmSim(small_cfg.agent, scene=SceneConfig()) as sc:
        assert plain.scene is None and plain.scene_bodies == {}
        x0, x1 = plain.reset(0), sc.reset(0)
        np.testing.assert_array_equal(x0, x1)
        for _ in range(5):
            x0, x1 = plain.step(u), sc.step(u)
        np.testing.assert_array_equal(x0, x1)


# --- peg insertion (config/panda_peg.yaml with a camera): peg, block with the hole, table ----------

from pathlib import Path  # noqa: E402

from gps_ros.agents.sim import build_sim  # noqa: E402
from gps_ros.config import load_config  # noqa: E402
from gps_ros.sim.camera import SEG_TABLE  # noqa: E402
from gps_ros.sim.peg import BLOCK_RGBA, PEG_RGBA  # noqa: E402

PEG_YAML = Path(__file__).resolve().parents[1] / "config" / "panda_peg.yaml"


@pytest.fixture(scope="module")
def peg_sim():
    cfg = load_config(PEG_YAML, ["agent.camera={}"])  # the default 64x64 fast camera
    sim, cam = build_sim(cfg.agent)
    assert sim.peg is not None and cam is not None and cam.cfg.renderer == "fast"
    yield sim
    sim.close()


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_peg_fast_matches_tiny(peg_sim):
    """Fast vs TinyRenderer labels on the peg scene at 64x64 (all 4 holes, start pose plus one
    perturbed pose).  Measured: block IoU 0.77-0.87 (a ~6-px block: its boundary, plus a constant
    half-pixel shift of TinyRenderer's raster, centroid offset (+0.5, -0.5) px at every
    resolution; 0.87-0.92 at 128x128), arm (capsules + peg) 0.68-0.77 (as the reach scene's arm,
    bound 0.6 as there), table 0.93.  Bounds: block 0.7, arm 0.6, table 0.85."""
    fast = Camera(width=64, height=64)
    tiny = Camera(width=64, height=64, renderer="tiny")
    q0 = np.asarray(peg_sim.cfg.start_joint_positions)
    ious = {SEG_OBJECT: [], SEG_ARM: [], SEG_TABLE: []}
    try:
        for cond in range(4):
            peg_sim.reset(cond)
            if cond == 3:
                _set_arm(peg_sim, q0 + np.random.default_rng(0).normal(0.0, 0.2, 7))
            a, b = fast.segment(peg_sim), tiny.segment(peg_sim)
            for lab in ious:
                ious[lab].append(_iou(a == lab, b == lab))
    finally:
        peg_sim.reset(0)
    assert min(ious[SEG_OBJECT]) > 0.7, ious
    assert min(ious[SEG_ARM]) > 0.6, ious
    assert min(ious[SEG_TABLE]) > 0.85, ious


@pytest.mark.parametrize("size", [64, 128])
def test_peg_hole_is_dark(peg_sim, size):
    """The pixel at the projection of the hole's centre (``sim.target``) is block (label) and dark:
    at 64x64 the opening (2.6 cm, ~1 px) is drawn anti-aliased, measured 0.40-0.64 of the lit top
    face's brightness; at 128x128 the pixel lies inside the opening, 0.21-0.24 (the hole colour)."""
    cam = Camera(width=size, height=size)
    top = np.asarray(BLOCK_RGBA[:3]) * (cam.cfg.ambient + cam.cfg.diffuse * cam._light[2]) * 255.0
    bound = 0.75 if size == 64 else 0.35
    for cond in range(4):
        peg_sim.reset(cond)
        img, mask = cam.render(peg_sim, return_mask=True)
        u, v = cam.project(peg_sim.target)
        c, r = int(np.floor(u + 0.5)), int(np.floor(v + 0.5))
        assert mask[r, c] == SEG_OBJECT
        ratio = img[r, c].astype(float).sum() / top.sum()
        assert ratio < bound, (cond, ratio)
        # the top face around the opening is lit: the darkening is the hole's
        lit = (mask == SEG_OBJECT) & (np.abs(img.astype(float).sum(-1) - top.sum()) < 3)
        assert lit.sum() >= 4
    peg_sim.reset(0)


def test_peg_drawn_on_the_hand(peg_sim):
    """The peg (an exact cylinder on the ``peg`` link) is labelled arm and has the peg colour along
    its exposed shaft, and it hides the block/table behind it."""
    peg_sim.reset(0)
    cam = Camera(width=128, height=128)
    img, mask = cam.render(peg_sim, return_mask=True)
    st = p.getLinkState(peg_sim.robot, 12, computeForwardKinematics=1,
                        physicsClientId=peg_sim.physics_client)
    z = np.array(p.getMatrixFromQuaternion(st[5])).reshape(3, 3)[:, 2]
    cfg = peg_sim.peg
    hue = np.asarray(PEG_RGBA[:3]) / np.linalg.norm(PEG_RGBA[:3])
    for s in (cfg.tip - 0.01, cfg.tip - 0.03, cfg.tip - 0.05):  # below the fingertips
        u, v = cam.project(np.asarray(st[4]) + s * z)
        c, r = int(np.floor(u + 0.5)), int(np.floor(v + 0.5))
        assert mask[r, c] == SEG_ARM, s
        px = img[r, c].astype(float)
        assert px @ hue / np.linalg.norm(px) > 0.99, (s, img[r, c])  # the peg's colour, shaded


def test_peg_block_moves_with_the_condition(peg_sim):
    """The block's pixels follow the hole's position: between conditions (and with pose_scene) its
    mask centroid moves by the projected target's displacement (within 1 px)."""
    cam = Camera(width=64, height=64)
    cents, uvs, masks = [], [], []
    for cond in (0, 1, 2):
        peg_sim.reset(cond)
        m = cam.segment(peg_sim) == SEG_OBJECT
        assert m.sum() >= 20
        masks.append(m)
        cents.append(np.argwhere(m).mean(axis=0)[::-1])  # (u, v)
        uvs.append(cam.project(peg_sim.target))
    for i in (1, 2):
        assert _iou(masks[0], masks[i]) < 0.5
        shift, expected = cents[i] - cents[0], uvs[i] - uvs[0]
        assert np.linalg.norm(expected) > 3.0
        assert np.linalg.norm(shift - expected) < 1.0, (i, shift, expected)
    # an arbitrary block position (vision pretraining scenes) moves the block too
    peg_sim.pose_scene(peg_sim.cfg.start_joint_positions, [0.45, 0.2, 0.06])
    m = cam.segment(peg_sim) == SEG_OBJECT
    shift = np.argwhere(m).mean(axis=0)[::-1] - cents[0]
    expected = cam.project(peg_sim.target) - uvs[0]
    assert np.linalg.norm(shift - expected) < 1.0, (shift, expected)
    peg_sim.reset(0)


def test_peg_static_layer_cache_is_exact(peg_sim):
    """The cached table + block layer gives the same image as rendering it anew."""
    cam = Camera(width=64, height=64)
    seq = [0, 1, 0, 2]
    first = []
    for cond in seq:
        peg_sim.reset(cond)
        first.append(cam.render(peg_sim, return_mask=True))
    for cond, (img, mask) in zip(seq, first):
        peg_sim.reset(cond)
        img2, mask2 = Camera(width=64, height=64).render(peg_sim, return_mask=True)
        np.testing.assert_array_equal(img, img2)
        np.testing.assert_array_equal(mask, mask2)
    peg_sim.reset(0)


def test_peg_chamfer_drawn_as_tiny_draws_it():
    """A 1.5 cm entry chamfer (``peg.chamfer``) widens the opening in the top face: at 128x128 the
    lit top face loses pixels to the 45° faces, and the fast caster's lit top face matches
    TinyRenderer's (measured: 80/60/90/71 vs 77/58/92/73 px over the 4 holes; without the chamfer
    90/67/103/81)."""
    def lit_top(sim, renderer):
        cam = Camera(width=128, height=128, renderer=renderer)
        top = np.asarray(BLOCK_RGBA[:3]) * (cam.cfg.ambient + cam.cfg.diffuse * cam._light[2]) * 255.0
        img, mask = cam.render(sim), cam.segment(sim)
        return int(((mask == SEG_OBJECT) & (np.abs(img.astype(float) - top).sum(-1) < 6)).sum())

    counts = {}
    for ch in (0.0, 0.015):
        cfg = load_config(PEG_YAML, ["agent.camera={}", f"agent.peg.chamfer={ch}"])
        sim, _ = build_sim(cfg.agent)
        try:
            for cond in range(4):
                sim.reset(cond)
                counts[ch, cond] = (lit_top(sim, "fast"), lit_top(sim, "tiny"))
        finally:
            sim.close()
    for cond in range(4):
        fast, tiny = counts[0.015, cond]
        assert abs(fast - tiny) <= 0.1 * tiny, counts
        assert counts[0.0, cond][0] - fast >= 5, counts


# --- robots without a capsule file: capsules fitted to their collision geometry ---------------------

import xml.etree.ElementTree as ET  # noqa: E402

from gps_ros.robot import package_share  # noqa: E402
from gps_ros.robot.capsules import capsule_file  # noqa: E402

CONFIG_DIR = PEG_YAML.parent
#: per robot: the camera view (the default one for the iiwa and the UR5, arms of the Panda's size; a
#: closer one for the 40 cm SO-101) and the bounds on the fast-vs-TinyRenderer arm IoU at 128x128
#: (mean, min over the poses of _fitted_poses).  Measured: iiwa 0.898 / 0.877, UR5 0.865 / 0.846,
#: SO-101 0.823 / 0.786 (at 64x64: 0.861 / 0.837, 0.804 / 0.752, 0.765 / 0.707; the Panda's
#: hand-fitted capsules give 0.78 / 0.73 at 128x128 on such poses); the bounds leave about 0.05 on
#: the mean and 0.07 on the minimum.
FITTED_ROBOTS = {
    "iiwa": ({}, (0.85, 0.8)),
    "ur5": ({}, (0.82, 0.77)),
    "so101": ({"eye": (0.6, 0.4, 0.45), "target": (0.15, 0.0, 0.12)}, (0.78, 0.72)),
}


@pytest.fixture(scope="module", params=sorted(FITTED_ROBOTS))
def fitted_sim(request):
    name = request.param
    if name in ("ur5", "so101") and package_share("example-robot-data") is None:
        pytest.skip("needs the example-robot-data wheel (pip install 'gps_ros[robots]')")
    sim = ArmSim(load_config(CONFIG_DIR / f"{name}_reach.yaml").agent, scene=SceneConfig())
    sim.reset(0)
    yield name, sim
    sim.close()


def _fitted_poses(sim, cam, n=12, sigma=0.5, seed=0):
    """The start pose and ``n - 1`` random poses around it (``sigma`` rad, within the joint limits)
    with every moving link's frame at least 3 cm above the table and the EE inside the image."""
    rng = np.random.default_rng(seed)
    q0 = np.asarray(sim.cfg.start_joint_positions, dtype=np.float64)
    d, cid = sim.description, sim.physics_client
    moving = [i for ln, i in sim.link_index.items() if any(j.movable for j in d.chain(ln))]
    out = [q0]
    while len(out) < n:
        q = np.clip(q0 + rng.normal(0.0, sigma, q0.shape), sim.joint_lower, sim.joint_upper)
        sim.pose_scene(q, sim.target)
        z = [s[4][2] for s in p.getLinkStates(sim.robot, moving, computeForwardKinematics=1,
                                              physicsClientId=cid)]
        u, v = cam.project(sim.ee_pose()[0])
        if min(z) > 0.03 and 0 <= u <= cam.width - 1 and 0 <= v <= cam.height - 1:
            out.append(q)
    return out


def test_fitted_capsules_match_tiny(fitted_sim):
    """iiwa, UR5, SO-101 (capsules fitted to the collision meshes, tests/test_capsules.py) at
    128x128 over 12 poses: the fast camera's arm mask against TinyRenderer's (which draws the
    visual meshes: PyBullet loads every one, the UR5's COLLADA ones included) -- IoU bounds of
    FITTED_ROBOTS; the projected EE origin is an arm pixel of the fast image in every pose; the
    geometry of the URDF root (the SO-101's base_link), drawn at ``sim.root_pose``, is arm too."""
    name, sim = fitted_sim
    view, (mean_bound, min_bound) = FITTED_ROBOTS[name]
    assert capsule_file(sim.description) is None
    cid = sim.physics_client
    shown = {v[1] for v in p.getVisualShapeData(sim.robot, physicsClientId=cid)}   # link indices
    index = dict(sim.link_index, **{sim.description.root: -1})
    with_visual = {ln.get("name") for ln in ET.fromstring(sim.description.urdf).findall("link")
                   if ln.find("visual") is not None}
    assert {index[ln] for ln in with_visual} <= shown, "a visual mesh did not load in PyBullet"

    fast = Camera(width=128, height=128, **view)
    tiny = Camera(width=128, height=128, renderer="tiny", **view)
    ious = []
    try:
        for i, q in enumerate(_fitted_poses(sim, fast)):
            sim.pose_scene(q, sim.target)
            a = fast.segment(sim) == SEG_ARM
            b = tiny.segment(sim) == SEG_ARM
            ious.append(_iou(a, b))
            u, v = fast.project(sim.ee_pose()[0])
            assert a[int(np.floor(v + 0.5)), int(np.floor(u + 0.5))], (name, i, "EE not on the arm")
            if i == 0:
                pos, R = sim.root_pose
                root = [c for c in sim.capsules.capsules if c.link == sim.description.root]
                for c in root:
                    mid = pos + R @ (0.5 * (np.asarray(c.a) + np.asarray(c.b)))
                    cu, cv = fast.project(mid)
                    assert a[int(np.floor(cv + 0.5)), int(np.floor(cu + 0.5))], (name, "root capsule")
                assert root or name != "so101"
    finally:
        sim.reset(0)
    assert np.mean(ious) > mean_bound and min(ious) > min_bound, (name, np.round(ious, 3))
