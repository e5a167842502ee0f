"""Tests of data.py and study/morpho.py: MNIST loading, colour, the Morpho-MNIST perturbations (fidelity
against the table in morpho-ops.md, identity with the straightforward reference pipeline, determinism),
D_u / D_r / val / test, the cache (corruption, recipe, atomic writes, read-only data root), CompCars on a
generated fixture, bad input to both command lines.
Offline, on the committed fixture of real digits; the real-MNIST fidelity check runs when RGF_DATA_ROOT
holds MNIST.

    python -m pytest -q tests/test_data.py
"""
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

import data
from conftest import write_small_mnist
from study import morpho

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# morpho-ops.md: median (thickness ratio, area ratio) of the original library on 300 real digits
TABLE = {"thin": (0.51, 0.39), "thick": (1.92, 1.91), "swell": (1.20, 1.25), "fracture": (0.94, 0.86)}


# --- MNIST and colour ----------------------------------------------------------------------------
def test_load_mnist_fixture(small_mnist_root):
    x, y = data.load_mnist(small_mnist_root, train=True)
    assert x.shape == (3000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10)) and x.max() == 255
    xt, _ = data.load_mnist(small_mnist_root, train=False)
    assert xt.shape == (1000, 28, 28)


def test_missing_mnist_is_one_clear_error(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST
    monkeypatch.setattr(MNIST, "mirrors", [])          # no download possible, online or not
    root = tmp_path / "nothing"
    with pytest.raises(FileNotFoundError) as e:
        data.load_mnist(str(root), train=True)
    msg = str(e.value)
    assert "\n" not in msg and "train-images-idx3-ubyte" in msg and str(root) in msg
    assert not root.exists()                           # no empty folders left behind


def test_colourise_channels():
    x = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    out = data.colourise(x, np.array([0, 1]))
    assert out.shape == (2, 3, 28, 28) and out.dtype == np.uint8
    assert np.array_equal(out[0, 0], x[0]) and not out[0, 1:].any()           # red: R = x
    assert np.array_equal(out[1, 1], x[1]) and not out[1, [0, 2]].any()       # green: G = x


def test_data_and_cache_roots(tmp_path, monkeypatch):
    monkeypatch.delenv("RGF_DATA_ROOT", raising=False)
    monkeypatch.delenv("RGF_CACHE_DIR", raising=False)
    assert data.data_root() == "./data" and data.data_root("x") == "x"
    monkeypatch.setenv("RGF_DATA_ROOT", "/some/where")
    assert data.data_root() == "/some/where"
    assert data.cache_root(str(tmp_path)) == str(tmp_path / "rgf-cache")
    assert data.cache_root(str(tmp_path), "mine") == "mine"


# --- the perturbations ---------------------------------------------------------------------------
def test_fast_pipeline_identical_to_reference(small_mnist_root):
    """The fast path (shared skeleton, batched pyramids, distance-map erosion/dilation, local swelling
    warp) gives the same bytes as the straightforward per-image skimage pipeline."""
    x, _ = data.load_mnist(small_mnist_root, train=True)
    sample = x[:8]
    fast = morpho.render(sample, morpho.RENDERINGS, seed=11, workers=1, progress=False)
    for op in morpho.RENDERINGS:
        assert np.array_equal(fast[op], morpho._reference_pipeline(sample, op, seed=11)), op


def test_medial_axis_and_expand_match_skimage(small_mnist_root):
    from skimage.morphology import medial_axis
    from skimage.transform import pyramid_expand
    x, _ = data.load_mnist(small_mnist_root, train=False)
    hi = morpho._expand(x[:10])
    for k in range(10):
        ref = pyramid_expand(x[k], upscale=morpho.SCALE, order=3)
        assert np.allclose(hi[k], ref, atol=1e-12, rtol=0)
        binary = morpho._binarise(ref)
        assert np.array_equal(morpho._binarise(hi[k]), binary)
        skel, dist = morpho._medial_axis(binary)
        skel_ref, dist_ref = medial_axis(binary, return_distance=True, rng=0)
        assert np.array_equal(skel, skel_ref) and np.array_equal(dist, dist_ref)


def _fidelity(images):
    out = morpho.render(images, morpho.RENDERINGS, seed=0, workers=None, progress=False)
    th0, a0 = data.morphometrics(out["plain"])
    assert (th0 > 0).all()
    for op, (t_ref, a_ref) in TABLE.items():
        th, a = data.morphometrics(out[op])
        t_med, a_med = np.median(th / th0), np.median(a / a0)
        assert abs(t_med - t_ref) <= 0.1, (op, "thickness", t_med, t_ref)
        assert abs(a_med - a_ref) <= 0.1, (op, "area", a_med, a_ref)


def test_fidelity_on_fixture_digits(small_mnist_root):
    """300 real MNIST digits (the fixture's first): medians within 0.1 of morpho-ops.md."""
    x, _ = data.load_mnist(small_mnist_root, train=True)
    _fidelity(x[:300])


def test_fidelity_on_real_mnist(real_mnist_root):
    """300 digits spread over the whole real MNIST training set."""
    x, _ = data.load_mnist(real_mnist_root, train=True)
    _fidelity(x[::200])


def test_perturbations_change_what_they_should(small_mnist_root):
    x, _ = data.load_mnist(small_mnist_root, train=True)
    flat = data.plain(x[:50])
    area = lambda im: (im > 127).sum(axis=(1, 2))
    assert (area(data.perturb(x[:50], "thin", progress=False)) <= area(flat)).all()
    assert (area(data.perturb(x[:50], "thick", progress=False)) >= area(flat)).all()
    assert np.median(area(data.perturb(x[:50], "fracture", progress=False)) / area(flat)) < 0.95


def test_determinism_any_worker_count(small_mnist_root):
    x, _ = data.load_mnist(small_mnist_root, train=True)
    one = data.perturb(x[:250], "fracture", seed=4, workers=1, progress=False)
    two = data.perturb(x[:250], "fracture", seed=4, workers=2, progress=False)
    assert np.array_equal(one, two)
    other = data.perturb(x[:250], "fracture", seed=5, workers=2, progress=False)
    assert (other != one).any(axis=(1, 2)).mean() > 0.5       # the seed drives the randomness
    # index-based generators: a digit's rendering does not depend on the batch it came in
    assert np.array_equal(data.perturb(x[:120], "swell", seed=4, progress=False),
                          data.perturb(x[:250], "swell", seed=4, progress=False)[:120])


def test_perturb_rejects_unknown_op():
    with pytest.raises(ValueError, match="accepted: thin, thick, swell, fracture"):
        data.perturb(np.zeros((1, 28, 28), np.uint8), "blur")


# --- datasets D_u, D_r, val, test ----------------------------------------------------------------
def _counts(y, f):
    return np.array([[((y == c) & (f == v)).sum() for v in (0, 1)] for c in range(10)])


def test_colour_splits(small_mnist_root, cache_dir):
    kw = dict(root=small_mnist_root, cache_dir=cache_dir)
    x, y, f = data.make_dataset("colour", **kw)
    assert x.shape == (2700, 3, 28, 28) and x.dtype == np.uint8 and y.dtype == f.dtype == np.int64
    assert (np.abs(_counts(y, f)[:, 0] - _counts(y, f)[:, 1]) <= 1).all()     # D_u balanced per class
    assert not x[f == 1][:, [0, 2]].any() and not x[f == 0][:, 1:].any()      # green iff f = 1
    xv, yv, fv = data.make_dataset("colour", "val", rare=3, **kw)             # rare ignored on val
    assert len(yv) == 300 and (np.abs(_counts(yv, fv)[:, 0] - _counts(yv, fv)[:, 1]) <= 1).all()
    xt, yt, ft = data.make_dataset("colour", "test", **kw)
    assert len(yt) == 2000 and np.array_equal(yt[:1000], yt[1000:]) and ft.sum() == 1000
    assert np.array_equal(xt[:1000, 0], xt[1000:, 1])                          # same digits, both colours


def test_holdout_is_disjoint_and_fixed():
    y = np.repeat(np.arange(10), 3000)
    val, train = data._holdout(y)
    assert len(val) == data.N_VAL and np.bincount(y[val]).tolist() == [200] * 10
    assert not np.intersect1d(val, train).size and len(val) + len(train) == len(y)
    assert np.array_equal(val, data._holdout(y)[0])


@pytest.mark.parametrize("p_in,p_out", [(1.0, 0.0), (0.9, 0.1)])
def test_rare_skew(small_mnist_root, cache_dir, p_in, p_out):
    _, y, f = data.make_dataset("colour", rare=2, p_in=p_in, p_out=p_out, root=small_mnist_root,
                                cache_dir=cache_dir)
    for c in range(10):
        n, p = (y == c).sum(), (p_in if c == 2 else p_out)
        assert f[y == c].sum() == round(p * n)


def test_morph_dataset_uses_plain_and_perturbed(small_mnist_root, cache_dir):
    kw = dict(root=small_mnist_root, cache_dir=cache_dir, limit=400, seed=0)
    x, y, f = data.make_dataset("thick", rare=1, **kw)
    images, _ = data.load_mnist(small_mnist_root, train=True)
    val, train = data._holdout(np.asarray(data.load_mnist(small_mnist_root, True)[1][:400]))
    grey = x.max(axis=1)
    thick = data.perturb(images[:400], "thick", seed=0, progress=False)[train]
    flat = data.plain(images[:400])[train]
    assert np.array_equal(grey[f == 1], thick[f == 1]) and np.array_equal(grey[f == 0], flat[f == 0])
    assert (f[y == 1] == 1).all() and (f[y != 1] == 0).all()
    green = x[:, 1].any(axis=(1, 2))
    assert (x[:, 0].any(axis=(1, 2)) ^ green).all()                     # exactly one channel
    assert 0.4 < green.mean() < 0.6                                     # random colour, 50/50
    # colour independent of the factor: the same colours in D_u and D_r
    xu, _, _ = data.make_dataset("thick", **kw)
    assert np.array_equal(xu[:, 1].any(axis=(1, 2)), green)
    xt, yt, ft = data.make_dataset("thick", "test", **kw)
    assert len(xt) == 800 and ft[:400].sum() == 0 and ft[400:].all()


def test_same_seed_same_bytes(small_mnist_root, tmp_path):
    a = data.make_dataset("swell", rare=4, seed=7, root=small_mnist_root, cache_dir=str(tmp_path / "a"),
                          limit=200)
    b = data.make_dataset("swell", rare=4, seed=7, root=small_mnist_root, cache_dir=str(tmp_path / "b"),
                          limit=200)
    c = data.make_dataset("swell", rare=4, seed=8, root=small_mnist_root, cache_dir=str(tmp_path / "a"),
                          limit=200)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("kwargs,match", [
    (dict(factor="blur"), "accepted: colour, thin, thick, swell, fracture"),
    (dict(factor="thin", rare=10), "0..9"), (dict(factor="thin", rare=-1), "0..9"),
    (dict(factor="thin", p_in=1.5), "p_in 1.5"), (dict(factor="thin", p_out=-0.1), "p_out -0.1"),
    (dict(factor="thin", split="dev"), "accepted: train, val, test")])
def test_bad_arguments(kwargs, match, small_mnist_root):
    with pytest.raises(ValueError, match=match):
        data.make_dataset(root=small_mnist_root, **kwargs)


# --- cache ---------------------------------------------------------------------------------------
def _cache_files(folder, name="thin"):
    return sorted(f for f in os.listdir(folder) if f"-{name}-" in f)


def test_cache_corruption_is_rebuilt(small_mnist_root, tmp_path, capsys):
    cache, kw = str(tmp_path), dict(root=small_mnist_root, limit=150)
    first = data.make_dataset("thin", cache_dir=cache, **kw)
    assert len(os.listdir(cache)) == 5                                 # all renderings built at once
    path = os.path.join(cache, _cache_files(cache)[0])
    for damage in (lambda b: b[: len(b) // 2], lambda b: b[:200] + bytes(len(b) - 200)):
        with open(path, "rb") as fh:
            blob = fh.read()
        with open(path, "wb") as fh:
            fh.write(damage(blob))
        capsys.readouterr()
        again = data.make_dataset("thin", cache_dir=cache, **kw)
        assert "corrupt" in capsys.readouterr().err
        assert all(np.array_equal(u, v) for u, v in zip(first, again))
        with np.load(path) as z:                                       # rewritten whole
            assert z["images"].shape == (150, 28, 28)


def test_recipe_change_rebuilds(small_mnist_root, tmp_path, monkeypatch):
    """The cache key holds the recipe of study/morpho.py, the module that renders: a change there is a
    new file (data.RECIPE is the same string, re-exported for the oracles' cache key)."""
    cache = str(tmp_path)
    assert data.RECIPE is morpho.RECIPE
    data.make_dataset("thin", root=small_mnist_root, cache_dir=cache, limit=120)
    monkeypatch.setattr(morpho, "RECIPE", morpho.RECIPE + " changed")
    data.make_dataset("thin", root=small_mnist_root, cache_dir=cache, limit=120)
    assert len(_cache_files(cache)) == 2


def test_failed_write_leaves_nothing(small_mnist_root, tmp_path, monkeypatch):
    def broken(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError("disk full")
    monkeypatch.setattr(data.np, "savez_compressed", broken)
    x, _, _ = data.make_dataset("thin", root=small_mnist_root, cache_dir=str(tmp_path), limit=100)
    assert len(x) == 90 and os.listdir(tmp_path) == []                 # data served, no debris


def test_read_only_data_root_falls_back(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    write_small_mnist(root)
    monkeypatch.delenv("RGF_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    os.chmod(root, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        assert data.cache_root(str(root)) == str(tmp_path / "xdg" / "rgf")
        x, _, _ = data.make_dataset("thick", root=str(root), limit=100)
        assert len(x) == 90 and os.listdir(root) == ["MNIST"]
        assert len(os.listdir(tmp_path / "xdg" / "rgf")) == 5
    finally:
        os.chmod(root, stat.S_IRWXU)


# --- CompCars on a generated fixture in the real layout ------------------------------------------
def make_compcars(root, n=(4, 3, 3, 5)):
    """sv_data/ with n = (VW white, VW black, Toyota white, Toyota black) images plus distractors:
    a red Volkswagen, an unrecognised colour, a BMW. Make strings carry stray spaces."""
    from PIL import Image
    from scipy.io import savemat
    folder = os.path.join(root, "sv_data")
    makes = np.empty((3, 3), dtype=object)
    makes[:] = [[" Volkswagen", "Golf", "1"], ["Toyota  ", "Corolla", "2"], ["BMW", "X5", "3"]]
    rows = [(1, 1)] * n[0] + [(1, 0)] * n[1] + [(2, 1)] * n[2] + [(2, 0)] * n[3] + [(1, 2), (2, -1), (3, 1)]
    colours = np.empty((len(rows), 2), dtype=object)
    lines = []
    for k, (model, code) in enumerate(rows):
        rel = f"{model}/img{k:03d}.jpg"
        os.makedirs(os.path.join(folder, "image", str(model)), exist_ok=True)
        shade = 235 if code == 1 else 20
        Image.new("RGB", (48, 36), (shade,) * 3).save(os.path.join(folder, "image", rel))
        colours[k] = [rel, float(code)]
        lines.append(rel)
    savemat(os.path.join(folder, "sv_make_model_name.mat"), {"sv_make_model_name": makes})
    savemat(os.path.join(folder, "color_list.mat"), {"color_list": colours})
    test = set(lines[::5])
    for split, keep in (("train", lambda r: r not in test), ("test", lambda r: r in test)):
        with open(os.path.join(folder, f"{split}_surveillance.txt"), "w") as fh:
            fh.write("\n".join(r for r in lines if keep(r)) + "\n")
    return folder


def test_compcars_load_and_datasets(tmp_path):
    make_compcars(tmp_path)
    x, y, f = data.load_compcars(str(tmp_path), size=32)
    assert x.shape == (15, 3, 32, 32) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [7, 8] and f.sum() == 7                 # distractors dropped
    assert (x[f == 1].mean(axis=(1, 2, 3)) > 200).all() and (x[f == 0].mean(axis=(1, 2, 3)) < 50).all()
    xu, yu, fu = data.make_cars_dataset(str(tmp_path), rare=False, size=32)
    cells = [((yu == c) & (fu == v)).sum() for c in (0, 1) for v in (0, 1)]
    assert len(set(cells)) == 1 and cells[0] > 0                               # balanced D_u
    xr, yr, fr = data.make_cars_dataset(str(tmp_path), rare=True, size=32)
    assert (fr[yr == 0] == 1).all() and (fr[yr == 1] == 0).all() and (yr == 0).sum() == (yr == 1).sum()
    assert np.array_equal(data.make_cars_dataset(str(tmp_path), rare=0, size=32)[0], xr)  # class 0 = True
    xt, yt, ft = data.make_cars_dataset(str(tmp_path), split="test", size=32)
    assert len(yt) + len(data.load_compcars(str(tmp_path), 32, "train")[1]) == 15
    assert xt.shape[1:] == (3, 32, 32) and data.CARS_CLASSES[0] == "Volkswagen"


def test_compcars_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="CompCars not found"):
        data.load_compcars(str(tmp_path / "none"))
    folder = make_compcars(tmp_path)
    os.remove(os.path.join(folder, "color_list.mat"))
    with pytest.raises(FileNotFoundError, match="missing color_list.mat"):
        data.load_compcars(str(tmp_path))
    shutil.rmtree(folder)
    folder = make_compcars(tmp_path)
    os.remove(os.path.join(folder, "image", "2", "img010.jpg"))
    with pytest.raises(FileNotFoundError, match="missing image/2/img010.jpg"):
        data.load_compcars(str(tmp_path))
    with pytest.raises(ValueError, match="accepted: train, test"):
        data.make_cars_dataset(str(tmp_path), split="val")
    with pytest.raises(ValueError, match="rare=3"):
        data.make_cars_dataset(str(tmp_path), rare=3)


# --- command line --------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,needle", [
    (["--rare", "12"], "12 (--rare)"), (["--rare", "-1"], "-1 (--rare)"), (["--factor", "blur"], "blur"),
    (["--p-in", "2"], "2.0 (--p-in)"), (["--p-out", "-1"], "-1.0 (--p-out)"), (["--rare", "x"], "'x'"), (["--dataset", "svhn"], "svhn"),
    (["--limit", "0"], "limit=0"), (["--benchmark"], "--benchmark")])
def test_cli_bad_input_exit_2(argv, needle):
    r = subprocess.run([sys.executable, os.path.join(REPO, "data.py")] + argv, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_cli_missing_data_exit_2(tmp_path, monkeypatch, capsys):
    from torchvision.datasets import MNIST
    monkeypatch.setattr(MNIST, "mirrors", [])
    with pytest.raises(SystemExit) as e:
        data.main(["--factor", "thin", "--data-root", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "MNIST not found" in err and len(err.strip().splitlines()) == 1


def test_cli_preview(small_mnist_root, cache_dir, tmp_path, capsys):
    out = tmp_path / "preview.png"
    data.main(["--factor", "thin", "--rare", "1", "--out-dir", str(tmp_path), "--data-root", small_mnist_root,
               "--cache-dir", cache_dir, "--limit", "400"])
    text = capsys.readouterr().out
    assert out.stat().st_size > 1000 and "D_r f=1" in text
    row1 = next(line.split() for line in text.splitlines() if line.split()[:1] == ["1"])
    assert int(row1[3]) > 0 and int(row1[4]) == 0          # D_r: every 1 is thin


@pytest.mark.parametrize("argv,needle", [
    ([], "--benchmark"), (["--benchmark", "--sample", "0"], "--sample 0"), (["--benchmark", "--seed", "-1"], "-1"),
    (["--benchmark", "--workers", "x"], "'x'"), (["--benchmark", "--data-root", "/nonexistent"], "MNIST not found")])
def test_morpho_benchmark_bad_input_exit_2(argv, needle):
    r = subprocess.run([sys.executable, "-m", "study.morpho"] + argv, capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    assert r.returncode == 2 and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
