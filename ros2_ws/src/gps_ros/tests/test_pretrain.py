"""Vision pretraining: frames of random scenes, aux regression, and the S-step device option."""
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gps_ros.config import parse_config  # noqa: E402
from gps_ros.policy.distill import DistillData, PolicyTrainer  # noqa: E402
from gps_ros.policy.network import NetworkConfig  # noqa: E402
from gps_ros.policy.pretrain import render_pretrain_set  # noqa: E402

from conftest import small_config_dict  # noqa: E402


def _vision_agent(**camera):
    d = small_config_dict()
    d["agent"]["camera"] = {"width": 48, "height": 48, **camera}
    d["agent"]["target_region"] = {"low": [0.45, -0.2, 0.3], "high": [0.65, 0.2, 0.3]}
    return parse_config(d, "test").agent


def test_pretraining_frames_show_the_object_where_its_label_says():
    from gps_ros.agents.sim import build_sim
    from gps_ros.sim.camera import SEG_OBJECT

    cfg = _vision_agent()
    images, objects = render_pretrain_set(cfg, 12, seed=3, joint_noise=0.0)
    assert images.shape == (12, 48, 48, 3) and images.dtype == np.uint8
    lo, hi = np.array(cfg.target_region.low), np.array(cfg.target_region.high)
    assert np.all((objects >= lo) & (objects <= hi))
    assert len(np.unique(objects[:, 1])) == 12                 # random, not the conditions
    again, objects2 = render_pretrain_set(cfg, 12, seed=3, joint_noise=0.0)
    np.testing.assert_array_equal(images, again)               # deterministic in the seed
    np.testing.assert_array_equal(objects, objects2)
    # the red object's pixels sit where the camera projects the label (no arm motion: start pose)
    sim, cam = build_sim(cfg)
    try:
        for img, obj in zip(images, objects):
            sim.pose_scene(cfg.start_joint_positions, obj)
            np.testing.assert_array_equal(cam.render(sim), img)
            rows, cols = np.nonzero(cam.segment(sim) == SEG_OBJECT)
            assert len(rows) >= 1
            u, v = cam.project(obj)
            assert abs(cols.mean() - u) < 1.5 and abs(rows.mean() - v) < 1.5
    finally:
        sim.close()


def test_pose_scene_rejects_bad_input():
    from gps_ros.agents.sim import build_sim

    sim, _ = build_sim(_vision_agent())
    try:
        with pytest.raises(ValueError, match="joint_positions"):
            sim.pose_scene([0.0] * 6, [0.5, 0.0, 0.3])
        with pytest.raises(ValueError, match="object_position"):
            sim.pose_scene([0.0] * 7, [0.5, np.nan, 0.3])
    finally:
        sim.close()


def test_pretraining_teaches_the_feature_points_to_find_the_object():
    """Held-out frames: the aux head's object position error drops to a fraction of the region."""
    cfg = _vision_agent(width=32, height=32)
    images, objects = render_pretrain_set(cfg, 400, seed=0)
    test_img, test_obj = render_pretrain_set(cfg, 64, seed=1)
    net = NetworkConfig(image_size=(32, 32), joint_dim=14, action_dim=7, conv_channels=[16, 8],
                        conv_kernels=[5, 3], conv_strides=[2, 1], hidden=[16], aux_dim=3)
    tr = PolicyTrainer(net, lr=1e-3, batch_size=64, seed=0, shift=0, aux_weight=1.0, aux_scale=0.1)

    def err():
        pred = tr.predict_object(test_img)
        return np.abs(pred[:, :2] - test_obj[:, :2]).mean()

    before = err()
    out = tr.pretrain(images, objects, iterations=450, lr=1e-2)
    after = err()
    assert out["loss_end"] < out["loss_start"]
    assert tr.opt.param_groups[0]["lr"] == 1e-3        # the pretraining step size was temporary
    # the region is 20 x 40 cm, so predicting its centre errs by 7.5 cm on average; under
    # 3.5 cm the feature points track the cube (measured: 2.3 cm)
    assert after < 0.035 and after < 0.3 * before, (before, after)
    assert tr.aux_pool is not None and len(tr.aux_pool[0]) == 400
    # the pool rides along with the trainer (resume keeps it)
    tr2 = pickle.loads(pickle.dumps(tr))
    np.testing.assert_array_equal(tr2.aux_pool[0], images)


def test_pretraining_needs_an_aux_head_and_config_checks_it():
    net = NetworkConfig(image_size=(16, 16), joint_dim=2, action_dim=1, conv_channels=[4],
                        conv_kernels=[3], conv_strides=[1], hidden=[4])
    with pytest.raises(ValueError, match="auxiliary head"):
        PolicyTrainer(net).pretrain(np.zeros((2, 16, 16, 3), np.uint8), np.zeros((2, 3)), 1)
    d = small_config_dict()
    d["agent"]["camera"] = {"width": 32, "height": 32}
    d["algorithm"]["type"] = "mdgps"
    d["policy"] = {"pretrain_frames": 100}
    with pytest.raises(Exception, match="aux_weight"):
        parse_config(d, "test")
    d["policy"]["aux_weight"] = 1.0
    assert parse_config(d, "test").policy.pretrain_frames == 100
    # the blind ablation keeps the rest of the config: its (absent) vision needs no pretraining
    from gps_ros.agents import SimAgent
    from gps_ros.train import build_policy

    blind = parse_config({**d, "policy": {**d["policy"], "use_image": False}}, "test")
    with SimAgent(blind.agent) as agent:
        assert build_policy(blind, agent.task)[0].pretrain is None
    d["policy"]["device"] = "gpu"
    with pytest.raises(Exception, match="device"):
        parse_config(d, "test")


def _tiny_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, 3))
    u = q @ rng.standard_normal((3, 2))
    return DistillData(None, q, u, np.broadcast_to(np.eye(2), (n, 2, 2)).copy())


def test_s_step_device_option():
    net = NetworkConfig(joint_dim=3, action_dim=2, hidden=[8], use_image=False)
    tr = PolicyTrainer(net, iterations=5, device="auto")
    tr.train(_tiny_data())
    assert all(p.device.type == "cpu" for p in tr.net.parameters())   # back on the CPU
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            PolicyTrainer(net, iterations=5, device="cuda").train(_tiny_data())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_s_step_on_cuda_matches_cpu():
    data = _tiny_data(256)
    net = NetworkConfig(joint_dim=3, action_dim=2, hidden=[16], use_image=False)
    a = PolicyTrainer(net, iterations=50, seed=0, device="cpu")
    b = PolicyTrainer(net, iterations=50, seed=0, device="cuda")
    a.train(data)
    b.train(data)
    b.train(data)                                   # Adam state survives the moves
    assert all(p.device.type == "cpu" for p in b.net.parameters())
    a.train(data)
    pa, pb = a.predict(None, data.joint_state), b.predict(None, data.joint_state)
    np.testing.assert_allclose(pa, pb, atol=1e-3)


def test_s_step_stops_when_the_process_shuts_down():
    """trainer_node sets STOP_TRAINING on Ctrl-C: a running S-step ends at its next step."""
    import numpy as np

    from gps_ros.policy.distill import STOP_TRAINING, DistillData, PolicyTrainer, TrainingStopped
    from gps_ros.policy.network import NetworkConfig

    cfg = NetworkConfig(image_size=(8, 8), joint_dim=4, action_dim=2, use_image=False, hidden=[8])
    trainer = PolicyTrainer(cfg, iterations=5)
    n = 16
    data = DistillData(images=None, joint_state=np.zeros((n, 4)), actions=np.zeros((n, 2)),
                       precision=np.broadcast_to(np.eye(2), (n, 2, 2)).copy())
    trainer.train(data)
    STOP_TRAINING.set()
    try:
        with pytest.raises(TrainingStopped):
            trainer.train(data)
    finally:
        STOP_TRAINING.clear()


def test_peg_hole_localised_to_millimetres_only_without_random_shifts():
    """The peg task needs the hole to within the funnel: the feature points of
    ``panda_peg_vision.yaml``'s network, pretrained on camera frames of random hole positions,
    locate held-out holes to a few millimetres, but only without the random image translations
    (``policy.shift``) that help the cube task: at ~1 cm per pixel, shifting the frame by up to 2
    px while keeping its label blurs the label by up to 2 cm.  Measured with 600 frames and 800
    steps (the shipped 2000 and 3000 give 0.26 / 0.22 cm, ``bench/vision_localisation.py``): RMSE
    (x, y) 0.37 / 0.25 cm and 99 % of the holes within 1 cm at shift 0; 0.79 / 0.92 cm and 35 % at
    shift 2 (on the sharp-edged hole, without the chamfer in view: 0.57 / 0.24 cm, 92 % and
    0.95 / 0.88 cm, 31 %)."""
    from pathlib import Path

    from gps_ros.config import load_config
    from gps_ros.train import build_trainer

    yaml = Path(__file__).resolve().parents[1] / "config" / "panda_peg_vision.yaml"
    res = {}
    for shift in (0, 2):
        cfg = load_config(yaml, [f"policy.shift={shift}"])
        if shift == 0:
            images, objects = render_pretrain_set(cfg.agent, 600, seed=7919)
            test_img, test_obj = render_pretrain_set(cfg.agent, 150, seed=1234, joint_noise=0.05)
        tr = build_trainer(cfg, joint_dim=14, action_dim=7)
        tr.pretrain(images, objects, iterations=800, lr=cfg.policy.pretrain_lr)
        pred = tr.predict_object(test_img)
        e = pred[:, :2] - test_obj[:, :2]
        res[shift] = (np.sqrt((e ** 2).mean(0)), np.mean(np.linalg.norm(e, axis=1) < 0.01))
    (rmse0, within0), (rmse2, within2) = res[0], res[2]
    assert rmse0.max() < 0.006 and within0 > 0.85, res
    assert rmse2.min() > 1.3 * rmse0.max() and within2 < 0.6, res


@pytest.mark.parametrize("use_image", [True, False])
def test_renormalise_keeps_the_function_and_fits_the_new_scale(use_image):
    """``renormalise``: the statistics follow each S-step's data while the network computes the
    same actions as before (first-layer joint columns and head rescaled); without it the first
    S-step's statistics stay."""
    net = NetworkConfig(image_size=(16, 16), joint_dim=3, action_dim=2, conv_channels=[4],
                        conv_kernels=[3], conv_strides=[1], hidden=[8], use_image=use_image)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (32, 16, 16, 3), dtype=np.uint8) if use_image else None
    wide = _tiny_data(32, seed=1)
    narrow = DistillData(imgs, 0.1 * wide.joint_state + 0.5, 0.05 * wide.actions - 1.0, wide.precision)
    wide = DistillData(imgs, wide.joint_state, wide.actions, wide.precision)
    for renorm in (True, False):
        tr = PolicyTrainer(net, batch_size=16, iterations=5, seed=0, shift=0, renormalise=renorm)
        tr.train(wide)
        stats = [b.clone() for b in (tr.net.q_std, tr.net.u_std)]
        before = tr.predict(narrow.images, narrow.joint_state)
        if renorm:
            tr._set_normalisation(narrow)
        np.testing.assert_allclose(tr.predict(narrow.images, narrow.joint_state), before, rtol=1e-4, atol=1e-5)
        tr.train(narrow)
        if renorm:
            np.testing.assert_allclose(tr.net.u_std.numpy(), narrow.actions.std(0, ddof=1), rtol=1e-4)
            assert (tr.net.q_std < 0.2 * stats[0]).all()
        else:
            assert torch.equal(tr.net.q_std, stats[0]) and torch.equal(tr.net.u_std, stats[1])


def test_predict_object_needs_an_auxiliary_head():
    net = NetworkConfig(image_size=(16, 16), joint_dim=3, action_dim=2, conv_channels=[4],
                        conv_kernels=[3], conv_strides=[1], hidden=[8], aux_dim=0)
    with pytest.raises(ValueError, match="no auxiliary head"):
        PolicyTrainer(net).predict_object(np.zeros((1, 16, 16, 3), np.uint8))


def test_policies_pickled_before_later_options_resume_with_the_old_behaviour():
    """Run states pickled before an option existed load with the value that keeps the old
    behaviour (``_ADDED_SINCE_FIRST_PICKLE``), and train on."""
    from gps_ros.control import LinearGaussianController
    from gps_ros.policy.global_policy import GlobalPolicy
    from gps_ros.sample import TrialMeta, Trajectories

    net = NetworkConfig(joint_dim=3, action_dim=2, hidden=[8], use_image=False)
    pol = GlobalPolicy(PolicyTrainer(net, iterations=3, renormalise=True), np.arange(3), replay=2)
    for obj in (pol, pol.trainer):
        for k in obj._ADDED_SINCE_FIRST_PICKLE:
            del obj.__dict__[k]
    old, other = pickle.loads(pickle.dumps(pol)), pickle.loads(pickle.dumps(pol))
    assert (old.replay, old.buffer, old.pretrain, old.aux_targets) == (1, [], None, None)
    assert (old.trainer.renormalise, old.trainer.device, old.trainer.aux_pool) == (False, "cpu", None)
    tr = Trajectories(np.random.default_rng(0).normal(size=(2, 4, 3)), np.zeros((2, 4, 2)),
                      [TrialMeta(condition=0)] * 2)
    ctrl = LinearGaussianController(np.ones((4, 2, 3)), np.zeros((4, 2)),
                                    np.broadcast_to(np.eye(2), (4, 2, 2)).copy())
    old.train([tr], [ctrl])
    old.train([tr], [ctrl])
    assert len(old.buffer) == 1 and old.trained
    assert other.buffer == []                       # the default list is not shared
