"""Tests of study/morphometry.py, the morphometric reading of the stroke factors: the measures move the
way Morpho-MNIST's perturbations move them, the per-class call separates real digits with and without
each factor (clean and blurred), the blur is oracles.blur's, blank and malformed input.
Offline, in seconds, on the committed fixture of real digits (the calibration here uses half of the
fixture's test digits and is checked on the other half; the full validation on the real MNIST is
`python -m study.morphometry --validate`).

    python -m pytest -q tests/test_morphometry.py
"""
import json

import numpy as np
import pytest

import data
from study import morpho
from study import morphometry as mm

LIMIT = 400            # fixture test digits; the test split holds each twice: plain, then perturbed


@pytest.fixture(scope="module")
def digits(small_mnist_root, cache_dir):
    """{factor: (plain grey [400,28,28], perturbed grey, y)} of the fixture's first 400 test digits."""
    out = {}
    for factor in mm.STROKE_FACTORS:
        x, y, f = data.make_dataset(factor, "test", root=small_mnist_root, cache_dir=cache_dir,
                                    limit=LIMIT)
        g = mm.grey(x)
        out[factor] = (g[f == 0], g[f == 1], y[f == 0])
    return out


# --- the measures move as the perturbations do -------------------------------------------------
def test_thick_and_thin_move_thickness(digits):
    plain, thick, _ = digits["thick"]
    _, thin, _ = digits["thin"]
    t0, t1, t2 = (mm.measure(g)["thickness"] for g in (plain, thick, thin))
    assert (t1 > t0).mean() >= 0.9 and (t2 < t0).mean() >= 0.9
    assert 1.6 < np.median(t1 / t0) < 2.3 and 0.4 < np.median(t2 / t0) < 0.7   # morpho-ops.md


def test_thickness_and_area_are_morpho_mnists(digits):
    plain, thick, _ = digits["thick"]
    g = np.concatenate([plain[:20], thick[:20]])
    m, (thickness, area) = mm.measure(g), morpho.morphometrics(g)
    np.testing.assert_allclose(m["thickness"], thickness)
    np.testing.assert_allclose(m["area"], area)


def test_swell_bulges_and_fracture_cuts(digits):
    plain, swell, _ = digits["swell"]
    _, frac, _ = digits["fracture"]
    m0, ms, mf = mm.measure(plain), mm.measure(swell), mm.measure(frac)
    assert (ms["bulge"] > m0["bulge"]).mean() >= 0.9
    assert (mf["components"] > m0["components"]).mean() >= 0.9


def test_components_and_blank(digits):
    img = np.zeros((3, 28, 28), np.uint8)
    img[0, 4:24, 8:11] = 255                               # one bar
    img[1, 4:24, 8:11] = img[1, 4:24, 18:21] = 255         # two bars
    m = mm.measure(img)                                    # img[2] is blank
    assert m["components"][:2].tolist() == [1, 2] and m["valid"].tolist() == [True, True, False]
    assert np.isnan(m["thickness"][2]) and abs(m["thickness"][0] - 3) < 0.6


# --- the call: calibrated on one half of the digits, read on the other ---------------------------
@pytest.mark.parametrize("factor", mm.STROKE_FACTORS)
def test_call_separates_held_out_digits(digits, factor):
    plain, pert, y = digits[factor]
    half = len(y) // 2
    x = np.concatenate([plain[:half], pert[:half]])
    g, yc, fc, sig = mm.soft_copies(x, np.tile(y[:half], 2), np.repeat([0, 1], half), copies=1)
    cal = mm.fit_call(mm.measure(g), yc, fc, factor, clean=sig == 0)
    test = np.concatenate([plain[half:], pert[half:]])
    yt, ft = np.tile(y[half:], 2), np.repeat([0, 1], len(y) - half)
    for sigma, floor in ((0.0, 0.90), (1.0, 0.85)):        # chance is 0.5; measured 0.93-0.98
        acc = (mm.call(mm.measure(mm.blur(test, sigma)), yt, cal) == ft).mean()
        assert acc >= floor, (factor, sigma, acc)


def test_fit_ends_and_means(digits):
    plain, thick, y = (a[:200] for a in digits["thick"])
    g, yc, fc, sig = mm.soft_copies(np.concatenate([plain, thick]), np.tile(y, 2),
                                    np.repeat([0, 1], len(y)), copies=1)
    m = mm.measure(g)
    cal = mm.fit_call(m, yc, fc, "thick", clean=sig == 0)
    assert (cal["means"]["thickness"][:, 1] > cal["means"]["thickness"][:, 0]).all()
    clean = sig == 0
    for v in (0, 1):                          # the real digits themselves sit at the ends: 0 and 1
        rows = clean & (fc == v)
        np.testing.assert_allclose(mm.fit(m["thickness"][rows], yc[rows], cal), v, atol=1e-9)
        np.testing.assert_allclose(mm.fit(m["thickness"][fc == v], yc[fc == v], cal, ends="means_soft"),
                                   v, atol=1e-9)
    back = mm.as_json(cal)                    # what result.json would hold reads the same
    assert json.loads(json.dumps(back))["main"] == "thickness"
    np.testing.assert_array_equal(mm.call(m, yc, back), mm.call(m, yc, cal))


def test_blur_is_oracles_blur(digits):
    import oracles
    x = np.stack([digits["thin"][0][:50]] * 3, axis=1)
    x[:, 1] //= 2
    for sigma in (0.5, 1.0):
        ours, theirs = mm.blur(x, sigma).astype(int), oracles.degraded(x, "blur", sigma).astype(int)
        assert np.abs(ours - theirs).max() <= 1 and (ours == theirs).mean() > 0.99


# --- bad input ---------------------------------------------------------------------------------
def test_bad_input_is_a_clear_error(digits):
    plain, _, y = digits["thin"]
    with pytest.raises(ValueError, match="uint8"):
        mm.measure(plain.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[N,28,28\]"):
        mm.measure(plain[:, :14])
    with pytest.raises(ValueError, match="stroke factor"):
        mm.fit_call(mm.measure(plain[:4]), y[:4], np.zeros(4), "colour")
    with pytest.raises(ValueError, match="class 0"):             # no factor-bearing digit at all
        mm.fit_call(mm.measure(plain[:40]), y[:40], np.zeros(40, int), "thin")
    with pytest.raises(ValueError, match="sigmas >= 0"):
        mm.blur(plain[:2], -1.0)


@pytest.mark.parametrize("argv", [[], ["--validate", "--n", "5"], ["--validate", "--factor", "colour"]])
def test_command_line_refuses_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as e:
        mm.main(argv)
    assert e.value.code == 2 and "error" in capsys.readouterr().err
