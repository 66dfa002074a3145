"""The fixed camera (gps_ros.sim.camera): fast numpy ray caster against PyBullet's TinyRenderer."""
import numpy as np
import pybullet as p
import pytest

from conftest import small_config_dict
from gps_ros.config import parse_config
from gps_ros.sim.camera import SEG_ARM, SEG_OBJECT, Camera, CameraConfig, draw_points
from gps_ros.sim.panda import PandaReachSim, SceneConfig


@pytest.fixture(scope="module")
def scene_sim():
    cfg = parse_config(small_config_dict(), "test")
    sim = PandaReachSim(cfg.agent, scene=SceneConfig())
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
    with PandaReachSim(small_cfg.agent) as plain, PandaReachSim(small_cfg.agent, scene=SceneConfig()) as sc:
        assert plain.scene is None and plain.scene_bodies == {}
        x0, x1 = plain.reset(0), sc.reset(0)
        np.testing.assert_array_equal(x0, x1)
        for _ in range(5):
            x0, x1 = plain.step(u), sc.step(u)
        np.testing.assert_array_equal(x0, x1)
