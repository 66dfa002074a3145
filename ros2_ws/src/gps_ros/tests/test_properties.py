"""Property-based tests (Hypothesis) of what takes outside input: config validation, message
conversion, the camera pipeline.  Random shapes and values give a valid result or the one error
type the caller handles, with a one-line message; never a traceback of another kind."""
import copy

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gps_ros.config import ConfigError, parse_config  # noqa: E402
from gps_ros.image_pipeline import RAW_ENCODINGS, ImageError, ImagePipeline  # noqa: E402
from gps_ros.ros.convert import (ShapeError, controller_from_msg, cost_from_msg,  # noqa: E402
                                 dynamics_from_msg)

from conftest import small_config_dict  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# no subnormals: the package flushes them to zero process-wide (gps_ros.policy.network, for torch's
# speed), and Hypothesis refuses to draw them then
floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False, width=64)
dims = st.integers(-2, 5)


def _one_line(err: Exception) -> None:
    msg = str(err)
    assert msg and "\n" not in msg, msg


class _Msg:
    def __init__(self, **kw):
        self.__dict__.update(kw)


@st.composite
def flat_array(draw, size_hint):
    """A flat float list: usually of the size the shape fields ask for, sometimes not."""
    n = draw(st.one_of(st.just(max(size_hint, 0)), st.integers(0, 40)))
    return draw(st.lists(floats, min_size=n, max_size=n))


# --- messages ---------------------------------------------------------------------------------------
@SETTINGS
@given(st.data(), dims, dims, dims)
def test_controller_message_gives_a_controller_or_a_shape_error(data, T, dX, dU):
    n = lambda *s: int(np.prod([max(v, 0) for v in s]))      # noqa: E731
    msg = _Msg(horizon=T, dx=dX, du=dU, gain=data.draw(flat_array(n(T, dU, dX))),
               bias=data.draw(flat_array(n(T, dU))),
               covariance_cholesky=data.draw(flat_array(n(T, dU, dU))))
    try:
        c = controller_from_msg(msg)
    except ShapeError as err:
        _one_line(err)
        return
    assert c.K.shape == (T, dU, dX) and c.pol_covar.shape == (T, dU, dU)
    # a controller that was accepted is usable: finite gains, covariance and precision
    assert np.all(np.diagonal(c.chol_pol_covar, axis1=1, axis2=2) > 0)
    for a in (c.K, c.k, c.pol_covar, c.inv_pol_covar):
        assert np.isfinite(a).all()


@SETTINGS
@given(st.data(), dims, dims, dims)
def test_dynamics_message_gives_dynamics_or_a_shape_error(data, T, dX, dU):
    n = lambda *s: int(np.prod([max(v, 0) for v in s]))      # noqa: E731
    msg = _Msg(horizon=T, dx=dX, du=dU, fm=data.draw(flat_array(n(T, dX, dX + dU))),
               fv=data.draw(flat_array(n(T, dX))), dyn_covar=data.draw(flat_array(n(T, dX, dX))),
               x0mu=data.draw(flat_array(n(dX))), x0sigma=data.draw(flat_array(n(dX, dX))))
    try:
        d = dynamics_from_msg(msg)
    except (ShapeError, ValueError) as err:
        _one_line(err)
        return
    assert d.Fm.shape == (T, dX, dX + dU)


@SETTINGS
@given(st.data(), dims, dims)
def test_cost_message_gives_a_cost_or_a_shape_error(data, T, n):
    m = lambda *s: int(np.prod([max(v, 0) for v in s]))      # noqa: E731
    msg = _Msg(horizon=T, dxu=n, cm=data.draw(flat_array(m(T, n, n))),
               cv=data.draw(flat_array(m(T, n))), cc=data.draw(flat_array(m(T))))
    try:
        c = cost_from_msg(msg)
    except (ShapeError, ValueError) as err:
        _one_line(err)
        return
    assert c.Cm.shape == (T, n, n)


# --- camera frames ---------------------------------------------------------------------------------
ENCODINGS = sorted(RAW_ENCODINGS) + ["rgb16", "", "bayer_rggb8", "32FC1"]


@SETTINGS
@given(st.integers(-1, 9), st.integers(-1, 9), st.sampled_from(ENCODINGS),
       st.one_of(st.none(), st.integers(-1, 40)), st.data())
def test_raw_frames_give_a_network_frame_or_an_image_error(w, h, encoding, step, data):
    pipe = ImagePipeline(width=4, height=3)
    ch = RAW_ENCODINGS.get(encoding, (3, None))[0]
    right = max(h, 0) * (step if step else ch * max(w, 0))
    size = data.draw(st.one_of(st.just(max(right, 0)), st.integers(0, 300)))
    buf = bytes(data.draw(st.lists(st.integers(0, 255), min_size=size, max_size=size)))
    try:
        out = pipe.from_raw(buf, w, h, encoding, step)
    except ImageError as err:
        _one_line(err)
        return
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8


@SETTINGS
@given(st.binary(max_size=200))
def test_compressed_garbage_gives_an_image_error(data):
    pipe = ImagePipeline(width=4, height=3)
    try:
        out = pipe.from_compressed(data, "jpeg")
    except ImageError as err:
        _one_line(err)
        return
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8


def test_a_real_compressed_frame_still_decodes():
    import cv2
    ok, jpg = cv2.imencode(".png", np.full((6, 8, 3), 200, np.uint8))
    assert ok
    out = ImagePipeline(width=4, height=3).from_compressed(jpg.tobytes(), "png")
    assert out.shape == (3, 4, 3) and (out == 200).all()


# --- configs -------------------------------------------------------------------------------------
def _paths(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, dict):
                    yield from _paths(item, prefix + (k, i))


BASE = small_config_dict()
PATHS = sorted(_paths(BASE), key=str)
values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), floats,
                   st.text(max_size=8), st.lists(floats, max_size=4),
                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=3))
def test_a_config_with_random_values_validates_or_gives_one_config_error(edits):
    d = copy.deepcopy(BASE)
    for path, value in edits:
        node = d
        try:
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue                       # an earlier edit replaced a parent: skip this one
    try:
        cfg = parse_config(d, "random")
    except ConfigError as err:
        _one_line(err)
        return
    # a config that validated has a finite, positive horizon and finite targets
    assert cfg.agent.T >= 1
    for c in cfg.agent.conditions:
        if c.target is not None:
            assert np.isfinite(c.target).all()


@SETTINGS
@given(st.dictionaries(st.text(max_size=6), values, max_size=4))
def test_unknown_top_level_keys_are_config_errors(extra):
    d = copy.deepcopy(BASE)
    extra = {k: v for k, v in extra.items() if k not in d}
    d.update(extra)
    if not extra:
        parse_config(d, "random")
        return
    with pytest.raises(ConfigError) as err:
        parse_config(d, "random")
    _one_line(err.value)
