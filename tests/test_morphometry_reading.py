"""Tests of the morphometric reading of a run (study/morphometry.py, issue 28): the rare digit's fit and
tie from stored statistics (known answers, intervals, empty sides), reading() on real renderings that
stand in for a model's samples (a label oracle stubbed as one-hot of the true labels), the calibration
cache, and the --add command on a run folder. Offline, in seconds, on the committed fixture of real
digits.

    python -m pytest -q tests/test_morphometry_reading.py
"""
import hashlib
import json
import os

import numpy as np
import pytest

import data
import oracles
from study import morphometry as mm

LIMIT = 200            # fixture test digits standing in for samples; the test split holds each twice
STUB = {"dataset": "mnist", "size": 28}      # the oracles' dict, as far as reading() looks at it


# --- a label oracle that reads the true labels (one-hot), keyed by the images' bytes ---------------
def _key(x):
    return hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()


@pytest.fixture
def labels(monkeypatch):
    """{sha1 of an image batch: (labels, confidence)}: oracles.predict_proba answers with a one-hot of
    those labels scaled to `confidence` (the rest spread over the other classes)."""
    known = {}

    def proba(orc, x, batch_size=1024):
        y, conf = known[_key(x)]
        p = np.full((len(y), 10), 0.0)
        p[:] = ((1 - conf) / 9)[:, None]
        p[np.arange(len(y)), y] = conf
        return p, np.full(len(y), 0.5)

    monkeypatch.setattr(oracles, "predict_proba", proba)
    return lambda x, y, conf=1.0: known.__setitem__(_key(x), (y, np.broadcast_to(conf, y.shape).astype(float)))


@pytest.fixture
def ends(labels, small_mnist_root, cache_dir):
    """The stub reads the real test digits of the fit's ends (mm.end_digits) as their true classes."""
    for smoke in (False, True):
        x, y, _, _ = mm.end_digits("thick", small_mnist_root, cache_dir, 0, smoke)
        labels(x, y)


@pytest.fixture(scope="module")
def thick(small_mnist_root, cache_dir):
    """The fixture's first LIMIT test digits in both versions: D_u-like (all, half thick in every class)
    and D_r-like (plain digits of every class but 1, thick 1s), uint8 [N,3,28,28], with their labels."""
    x, y, f = data.make_dataset("thick", "test", root=small_mnist_root, cache_dir=cache_dir, limit=LIMIT)
    r = np.flatnonzero((f == 1) == (y == 1))
    return {"u": (x, y), "r": (x[r], y[r])}


def _stats(mean, sd, n):
    """A {"n", "mean", "sd"} block with class 1 set, the other classes empty."""
    blank = lambda v: [None] * 10 if v is None else [None] + [v] + [None] * 8
    return {"n": [0, n] + [0] * 8, "mean": blank(mean if n else None), "sd": blank(sd if n > 1 else None)}


def _morph(u, r, n=100, n_u=None, n_r=None, sd=1.0, plain=2.0, factor=5.0):
    """A synthetic reading: ends plain / factor of thickness, model class-1 means u and r."""
    return {"main": "thickness", "factor": "thick",
            "ends": {"plain": _stats(plain, sd, n), "factor": _stats(factor, sd, n)},
            "measures": {"u": {"thickness": _stats(u, sd, n if n_u is None else n_u)},
                         "r": {"thickness": _stats(r, sd, n if n_r is None else n_r)}}}


# --- fit and tie from the stored statistics -------------------------------------------------------
def test_fit_tie_known_answers_and_intervals():
    ft = mm.fit_tie(_morph(u=3.5, r=4.25), 1)
    assert ft["measure"] == "thickness" and (ft["n_u"], ft["n_r"]) == (100, 100)
    for key, truth in (("fit_u", 0.5), ("fit_r", 0.75), ("tie", 0.5)):
        assert ft[key] == pytest.approx(truth)
        lo, hi = ft[key + "_ci"]
        assert lo < truth < hi
    wide, narrow = (mm.fit_tie(_morph(u=3.5, r=4.25, n=n), 1) for n in (100, 10_000))
    for key in ("fit_u", "fit_r", "tie"):                 # 100x the samples: a tenth of the width
        w1, w2 = (np.diff(x[key + "_ci"])[0] for x in (wide, narrow))
        assert w2 == pytest.approx(w1 / 10, rel=1e-6)
    assert json.loads(json.dumps(ft, allow_nan=False)) == ft


def test_fit_tie_intervals_cover_the_truth():
    """The delta method's 95% intervals cover the true fit and tie in ~95% of simulated readings."""
    rng, hits = np.random.default_rng(0), np.zeros(3)
    for _ in range(400):
        means = [rng.normal(mu, 1.0, 200) for mu in (2.0, 5.0, 3.5, 4.25)]
        blocks = [(float(v.mean()), float(v.std(ddof=1))) for v in means]
        m = _morph(u=blocks[2][0], r=blocks[3][0], n=200)
        for (mean, sd), (part, side) in zip(blocks, (("ends", "plain"), ("ends", "factor"),
                                                     ("measures", "u"), ("measures", "r"))):
            block = m[part][side] if part == "ends" else m[part][side]["thickness"]
            block["mean"][1], block["sd"][1] = mean, sd
        ft = mm.fit_tie(m, 1)
        hits += [ft[k + "_ci"][0] < t < ft[k + "_ci"][1] for k, t in (("fit_u", .5), ("fit_r", .75), ("tie", .5))]
    assert ((hits / 400 > 0.91) & (hits / 400 < 0.99)).all(), hits / 400


@pytest.mark.parametrize("n_u,n_r", [(0, 100), (100, 1), (0, 0)])
def test_fit_tie_is_none_on_a_side_with_under_two_samples(n_u, n_r):
    m = json.loads(json.dumps(_morph(u=3.5, r=4.25, n_u=n_u, n_r=n_r)))     # as result.json holds it
    ft = mm.fit_tie(m, 1)
    assert (ft["fit_u"] is None) == (n_u < 2) and (ft["fit_r"] is None) == (n_r < 2)
    assert ft["tie"] is None and ft["tie_ci"] is None
    assert (ft["n_u"], ft["n_r"]) == (n_u, n_r)
    text = mm.format_fit(m, 1)
    assert "tie -" in text and len(text.splitlines()) <= 3
    assert mm.fit_tie(_morph(u=3.5, r=4.25, n=1), 1)["fit_u"] is None        # no ends: no fit


def test_format_fit():
    text = mm.format_fit(_morph(u=3.5, r=4.25), 1)
    assert text.startswith("morphometric fit of digit 1 (thickness): D_u 0.50 [")
    assert "D_r 0.75 [" in text and "tie 0.50 [" in text and "real thick ones" in text
    assert mm.format_fit(None, 1) == ""


# --- reading() on real renderings standing in for samples ---------------------------------------
@pytest.fixture
def read_thick(thick, labels, ends, small_mnist_root, cache_dir):
    """The reading of the D_u-like and D_r-like thick sets, all read as their true classes."""
    for w in ("u", "r"):
        labels(*thick[w])
    return mm.reading(STUB, {w: thick[w][0] for w in ("u", "r")}, "thick", 1, root=small_mnist_root,
                      cache_dir=cache_dir)


def test_reading_fits_thick_ones(read_thick, thick):
    """All-thick 1s sit near real thick 1s (fit 1), a balanced set half way (0.5); the tie near 1."""
    res = read_thick
    assert res["format"] == "rgf-morpho/1" and res["main"] == "thickness" and res["confidence"] == 0.9
    ft = mm.fit_tie(res, 1)
    assert 0.8 < ft["fit_r"] < 1.25 and ft["fit_r_ci"][0] < 1 < ft["fit_r_ci"][1], ft
    assert 0.35 < ft["fit_u"] < 0.65 and ft["fit_u_ci"][0] < 0.5 < ft["fit_u_ci"][1], ft
    assert ft["tie_ci"][0] < 1 < ft["tie_ci"][1], ft
    for w in ("u", "r"):
        np.testing.assert_array_equal(res["counts"][w]["n"], np.bincount(thick[w][1], minlength=10))
    n, k = (np.array(res["counts"]["r"][a]) for a in ("n", "k"))
    assert k[1] / n[1] > 0.9 and np.delete(k, 1).sum() / np.delete(n, 1).sum() < 0.1
    pu = np.array(res["counts"]["u"]["k"]) / res["counts"]["u"]["n"]
    assert (np.abs(pu - 0.5) < 0.2).all(), pu


def test_reading_is_json_and_complete(read_thick):
    res = json.loads(json.dumps(read_thick, allow_nan=False))
    assert set(res["measures"]["u"]) == set(mm.MEASURES)
    for w in ("u", "r"):
        for block in res["measures"][w].values():
            assert all(len(block[k]) == 10 for k in ("n", "mean", "sd"))
    for side in ("plain", "factor"):
        assert all(len(res["ends"][side][k]) == 10 for k in ("mean", "sd", "n"))
        assert min(res["ends"][side]["n"]) >= 2
    assert all(p < f for p, f in zip(res["ends"]["plain"]["mean"], res["ends"]["factor"]["mean"]))
    assert mm.fit_tie(res, 1) == mm.fit_tie(read_thick, 1)


def test_reading_keeps_only_readable_samples(thick, labels, ends, small_mnist_root, cache_dir):
    (x, y), conf = thick["u"], np.where(np.arange(len(thick["u"][1])) % 2 == 0, 0.95, 0.6)
    labels(x, y, conf)
    labels(*thick["r"])
    res = mm.reading(STUB, {"u": x, "r": thick["r"][0]}, "thick", 1, root=small_mnist_root,
                     cache_dir=cache_dir)
    np.testing.assert_array_equal(res["counts"]["u"]["n"], np.bincount(y[conf > 0.9], minlength=10))


def test_reading_is_none_off_the_stroke_factors_and_checks_its_input(thick):
    s = {w: thick[w][0] for w in ("u", "r")}
    assert mm.reading(STUB, s, "colour", 1) is None
    assert mm.reading({**STUB, "dataset": "cars"}, s, "thick", 0) is None
    with pytest.raises(ValueError, match=r"samples\['r'\].*uint8 \[M,3,28,28\]"):
        mm.reading(STUB, {"u": s["u"], "r": s["r"].astype(np.float32)}, "thick", 1)
    with pytest.raises(ValueError, match="rare class 10"):
        mm.reading(STUB, s, "thick", 10)


# --- the calibration's cache, and the smoke calibration on a tiny split ---------------------------
def _write_idx(path, array):
    """IDX: magic (0, 0, 0x08 ubyte, ndim), big-endian int32 dims, the bytes (as tests/conftest.py)."""
    with open(path, "wb") as fh:
        fh.write(bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes() + array.tobytes())


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """An MNIST root of 150 train digits (a val split of 10, one per class, none with the factor) and 50
    test digits."""
    root = tmp_path_factory.mktemp("mnist-tiny")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mnist-small.npz")
    with np.load(fixture) as z:
        for split, prefix, n in (("train", "train", 150), ("test", "t10k", 50)):
            _write_idx(raw / f"{prefix}-images-idx3-ubyte", np.ascontiguousarray(z[f"{split}_images"][:n]))
            _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.ascontiguousarray(z[f"{split}_labels"][:n]))
    return str(root)


def test_calibration_is_cached_and_rebuilt_when_corrupt(tiny_root, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    with pytest.raises(ValueError, match="class"):                  # the full calibration needs digits
        mm.cached_calibration("thick", tiny_root, cache, smoke=False)
    cal = mm.cached_calibration("thick", tiny_root, cache, smoke=True)   # smoke: the pooled call
    path, key = mm.calibration_path("thick", tiny_root, cache, smoke=True)
    assert os.path.exists(path) and json.load(open(path))["key"] == key and key["version"] == mm.CAL_VERSION
    monkeypatch.setattr(mm, "calibrate", lambda *a, **k: pytest.fail("calibrated again"))
    assert mm.cached_calibration("thick", tiny_root, cache, smoke=True) == cal
    assert mm.calibration_path("thick", tiny_root, cache, data_seed=1, smoke=True)[0] != path
    with open(path, "w") as fh:
        fh.write("{not json")
    monkeypatch.undo()
    assert mm.cached_calibration("thick", tiny_root, cache, smoke=True) == cal


# --- the --add command on a run folder -------------------------------------------------------------
@pytest.fixture
def run(tmp_path, thick, labels, ends, monkeypatch):
    """A finished smoke run's folders: <runs>/gan/thick-{balanced,rare1}-seed0 with samples.npz (M = 100)
    and result.json; the oracles are the stub."""
    runs, M = tmp_path / "runs", 100
    folders = {w: runs / "gan" / f"thick-{n}-seed0" for w, n in (("u", "balanced"), ("r", "rare1"))}
    pick = np.random.default_rng(0)
    for w, folder in folders.items():
        x, y = thick[w]
        idx = pick.choice(len(y), M, replace=False)
        folder.mkdir(parents=True)
        np.savez_compressed(folder / "samples.npz", x=x[idx], key=np.array("{}"))
        labels(x[idx], y[idx])
    res = {"format": "rgf-result/1", "model": "gan", "run_name": "gan", "dataset": "mnist", "factor": "thick",
           "rare": 1, "samples": M, "data_seed": 0, "oracle_smoke": True, "oracle_recipe": "robust",
           "dirs": {"u": "../thick-balanced-seed0", "r": "."}, "quality": {"warnings": []}}
    data.save_json(res, folders["r"] / "result.json")
    monkeypatch.setattr(oracles, "load_oracles", lambda *a, **k: STUB)
    return runs, folders, res


def _add(args, small_mnist_root, cache_dir, capsys):
    with pytest.raises(SystemExit) as e:
        mm.main(["--add", *map(str, args), "--data-root", small_mnist_root, "--cache-dir", cache_dir,
                 "--device", "cpu"])
    return e.value.code, capsys.readouterr()


def test_add_writes_the_reading(run, small_mnist_root, cache_dir, capsys):
    runs, folders, _ = run
    res = mm.main(["--add", str(folders["r"]), "--data-root", small_mnist_root, "--cache-dir", cache_dir])
    assert "morphometric fit of digit 1 (thickness)" in capsys.readouterr().out
    saved = json.load(open(folders["r"] / "result.json"))
    assert saved["morphometric"]["format"] == "rgf-morpho/1" and saved["morphometric"]["calibration"]["smoke"]
    assert saved["quality"]["fit"] == mm.fit_tie(saved["morphometric"], 1) == res["quality"]["fit"]
    assert sum(saved["morphometric"]["counts"]["u"]["n"]) == 100 and saved["quality"]["warnings"] == []


def test_add_finds_moved_samples_under_runs(run, small_mnist_root, cache_dir, capsys, tmp_path):
    runs, folders, res = run
    res["dirs"] = {"u": "/gone/gan/thick-balanced-seed0", "r": "/gone/gan/thick-rare1-seed0"}
    data.save_json(res, folders["r"] / "result.json")
    file = folders["r"] / "result.json"
    code, out = _add([file], small_mnist_root, cache_dir, capsys)
    assert code == 2 and "/gone/gan/thick-balanced-seed0" in out.err
    mm.main(["--add", str(file), "--runs", str(runs), "--data-root", small_mnist_root, "--cache-dir", cache_dir])
    assert "morphometric" in json.load(open(file))


def _colour(res, folders):
    data.save_json({**res, "factor": "colour"}, folders["r"] / "result.json")


def _no_samples(res, folders):
    os.remove(folders["u"] / "samples.npz")


def _wrong_m(res, folders):
    data.save_json({**res, "samples": 99}, folders["r"] / "result.json")


def _not_json(res, folders):
    (folders["r"] / "result.json").write_text("[1, 2")


@pytest.mark.parametrize("spoil,target,message", [
    (None, "missing", "no such result.json; accepted"),
    (_colour, "r", "mnist colour has no morphometric reading; accepted"),
    (_no_samples, "r", "no samples.npz of the D_u model"),
    (_wrong_m, "r", "the run's M samples"),
    (_not_json, "r", "not a run's result.json"),
])
def test_add_refuses_bad_input_in_one_line(run, small_mnist_root, cache_dir, capsys, spoil, target, message):
    runs, folders, res = run
    if spoil:
        spoil(res, folders)
    path = folders["r"] / "nothing.json" if target == "missing" else folders[target]
    code, out = _add([path], small_mnist_root, cache_dir, capsys)
    assert code == 2 and message in out.err, out.err
    assert len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    if spoil in (_no_samples, _wrong_m):                 # result.json is left as it was
        assert "morphometric" not in json.load(open(folders["r"] / "result.json"))


def test_fit_of_one_models_samples(run, small_mnist_root, cache_dir, capsys):
    """--fit: one model's samples alone; the D_r-like run folder's thick 1s sit near real thick 1s, its
    other (plain) digits near real plain ones; a folder without samples is one line and exit 2."""
    runs, folders, _ = run
    out = mm.fit_of_samples(str(folders["r"]), "thick", 1, "cpu", small_mnist_root, cache_dir)
    assert out["rare"]["fit_r"] > 0.6 and out["rare"]["measure"] == "thickness"
    others = [v for c, v in enumerate(out["fit"]) if c != 1 and v is not None]
    assert others and max(others) < 0.5 and 0 < out["readable"] <= 1
    assert "fit of digit 1 (thickness)" in capsys.readouterr().out
    code, err = _add_like(["--fit", str(runs / "nothing"), "--factor", "thick"], small_mnist_root, cache_dir, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "samples.npz" in err


def _add_like(args, small_mnist_root, cache_dir, capsys):
    with pytest.raises(SystemExit) as e:
        mm.main([*args, "--data-root", small_mnist_root, "--cache-dir", cache_dir])
    return e.value.code, capsys.readouterr().err
