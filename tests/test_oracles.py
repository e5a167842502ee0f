"""The oracle classifiers of oracles.py (section 5.2): training on the offline fixture, caching, the
classify / predict_proba API, input validation, the loud warning, and the command line. With real MNIST
($RGF_DATA_ROOT) the colour oracles must reach the 98% target; the four morphological factors are checked
too when RGF_FULL=1 (slow: minutes per factor on a 2-core CPU).

    python -m pytest -q tests/test_oracles.py
    RGF_DATA_ROOT=/work/shared/data RGF_FULL=1 python -m pytest -q tests/test_oracles.py
"""
import os

import numpy as np
import pytest
import torch

import data
import oracles
from study import robustness


@pytest.fixture(scope="module")
def colour(small_mnist_root, tmp_path_factory):
    """Colour oracles trained with the paper's recipe (8 epochs) on the fixture's 2,700 D_u digits."""
    cache = str(tmp_path_factory.mktemp("oracle-cache"))
    o = oracles.load_oracles("colour", root=small_mnist_root, cache_dir=cache, device="cpu")
    return o, cache


def test_train_and_classify_on_the_fixture(colour, small_mnist_root):
    o, _ = colour
    # chance: 10% for the digit, 50% for the colour; tested on 2 x 1,000 fixture test digits
    assert o["acc"]["label"] > 0.6 and o["acc"]["factor"] > 0.95
    assert o["n_test"] == 2000 and not o["smoke"]
    x, y, f = data.make_dataset("colour", "test", root=small_mnist_root, limit=300)
    labels, factors = oracles.classify(o, x)
    assert labels.dtype == factors.dtype == np.int64 and labels.shape == factors.shape == (600,)
    assert (labels == y).mean() > 0.6 and (factors == f).mean() > 0.95
    p_label, p_factor = oracles.predict_proba(o, x)
    assert p_label.shape == (600, 10) and p_factor.shape == (600,)
    np.testing.assert_allclose(p_label.sum(1), 1, atol=1e-5)
    assert (p_label.argmax(1) == labels).all() and ((p_factor > 0.5) == factors).all()
    t_labels, _ = oracles.classify(o, torch.from_numpy(x), batch_size=7)      # torch input, odd batches
    assert (t_labels == labels).all()


def test_cached_not_retrained(colour, small_mnist_root, monkeypatch):
    o, cache = colour
    monkeypatch.setattr(oracles, "train_oracles", lambda *a, **k: pytest.fail("retrained a cached oracle"))
    again = oracles.load_oracles("colour", root=small_mnist_root, cache_dir=cache, device="cpu")
    assert again["acc"] == o["acc"] and again["path"] == o["path"]
    keys = {oracles.cache_path("colour", root=small_mnist_root, cache_dir=cache),
            oracles.cache_path("colour", root=small_mnist_root, cache_dir=cache, smoke=True),
            oracles.cache_path("colour", root=small_mnist_root, cache_dir=cache, data_seed=1),
            oracles.cache_path("thin", root=small_mnist_root, cache_dir=cache)}
    assert len(keys) == 4 and o["path"] in keys


@pytest.mark.parametrize("bad, words", [(np.zeros((2, 3, 28, 28), np.float32), "float32"),
                                        (np.zeros((2, 1, 28, 28), np.uint8), "(2, 1, 28, 28)"),
                                        (np.zeros((3, 28, 28), np.uint8), "(3, 28, 28)")])
def test_bad_images_are_refused(colour, bad, words):
    with pytest.raises(ValueError) as e:
        oracles.classify(colour[0], bad)
    assert words in str(e.value) and "uint8 [N,3,28,28]" in str(e.value)


def test_smoke_training_is_deterministic(small_mnist_root, tmp_path):
    a = oracles.train_oracles("colour", root=small_mnist_root, cache_dir=str(tmp_path), device="cpu", smoke=True)
    b = oracles.train_oracles("colour", root=small_mnist_root, cache_dir=str(tmp_path), device="cpu", smoke=True)
    assert a["recipe"]["epochs"] == {"label": 1, "factor": 1} and a["n_train"] == 900
    for k in ("label", "factor"):
        assert all(torch.equal(a[k][n], b[k][n]) for n in a[k])
    assert a["acc"] == b["acc"]


def test_under_target_is_loud(small_mnist_root, tmp_path, monkeypatch, capsys):
    real = oracles.train_oracles

    def weak(*a, **k):
        ck = real(*a, **{**k, "smoke": True})
        ck["acc"]["factor"] = 0.9
        return ck
    monkeypatch.setattr(oracles, "train_oracles", weak)
    o = oracles.load_oracles("colour", root=small_mnist_root, cache_dir=str(tmp_path), device="cpu")
    err = capsys.readouterr().err
    assert o["below_target"] and "WARNING" in err and "90.00%" in err and "98% target" in err


def test_command_line(small_mnist_root, cache_dir, capsys):
    oracles.main(["--factor", "colour", "--smoke", "--data-root", small_mnist_root, "--cache-dir", cache_dir,
                  "--device", "cpu"])
    out = capsys.readouterr().out
    assert "Oracle accuracy on the test split" in out and "mnist  colour" in out


@pytest.mark.parametrize("argv, words", [(["--factor", "bogus"], "bogus"), (["--all", "--factor", "thin"], "--all"),
                                         (["--dataset", "cars", "--factor", "thin"], "cars"),
                                         (["--device", "cuda:9"], "cuda:9")])
def test_command_line_errors(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        oracles.main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and words in err


def test_missing_data_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        oracles.main(["--dataset", "cars", "--data-root", str(tmp_path), "--cache-dir", str(tmp_path), "--smoke"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 2 and len(err) == 1 and "Traceback" not in err[0]


@pytest.mark.parametrize("argv, words", [(["--oracles", "bogus"], "--oracles 'bogus'"), (["--bound", "x"], "--bound 'x'"),
                                         (["--bound", "0.8,-1"], "--bound '0.8,-1'"),
                                         (["--dataset", "cars", "--robustness"], "robustness")])
def test_robustness_options_are_checked(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        oracles.main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and words in err and "Traceback" not in err


# --------------------------------------------------------------------------- the robust recipe
def test_blur_is_a_normalised_gaussian_per_image():
    x = torch.zeros(2, 3, 28, 28)
    x[:, 1, 14, 14] = 1.0
    y = robustness.blur(x, torch.tensor([1.0, 0.0]))
    d2 = (torch.arange(28.0)[:, None] - 14) ** 2 + (torch.arange(28.0)[None, :] - 14) ** 2
    g = torch.exp(-d2 / 2) * (d2 <= 72)                    # the radius-6 window of each axis
    want = g / g.sum()
    assert torch.allclose(y[0, 1], want, atol=1e-6) and y[0, 1].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(y[1], x[1]) and y[0, 0].abs().sum() == 0        # sigma 0: unchanged; channels apart


def test_degradations_and_the_augmentation():
    x = torch.rand(6, 3, 28, 28)
    x[:, 2] = 0
    assert torch.allclose(robustness.degrade(x, "contrast", 0.5), x * 0.5)
    mixed = robustness.degrade(x, "mix", 0.25)
    assert torch.allclose(mixed[:, 1], 0.75 * x[:, 1] + 0.25 * x[:, 0]) and torch.allclose(mixed.sum(1), x.sum(1))
    noisy = robustness.degrade(x, "noise", 0.2, torch.Generator().manual_seed(0))
    assert noisy.min() >= 0 and noisy.max() <= 1 and not torch.equal(noisy, x)
    with pytest.raises(ValueError, match="jpeg"):
        robustness.degrade(x, "jpeg", 1)
    # the augmentation draws from its generator only: the same draws whatever the images show, so it
    # cannot tell f = 0 from f = 1, and it is repeatable
    a = oracles.augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, oracles.augment(x, torch.Generator().manual_seed(1)))
    assert a.min() >= 0 and a.max() <= 1 and a.shape == x.shape
    ones = torch.ones_like(x)
    assert torch.allclose(oracles.augment(ones, torch.Generator().manual_seed(1)).amax((1, 2, 3)),
                          oracles.augment(ones, torch.Generator().manual_seed(1)).amax((1, 2, 3)))


def test_softness_rises_with_blur_and_ignores_contrast():
    x = np.zeros((1, 3, 28, 28), np.uint8)
    x[0, 0, 6:22, 12:16] = 255                              # a crisp 4-pixel stroke
    soft = [oracles.softness(robustness.degraded(x, "blur", s))[0] for s in (0, 0.8, 1.5)]
    assert soft[0] == 0 and soft[0] < soft[1] < soft[2]
    faint = robustness.degraded(robustness.degraded(x, "blur", 0.8), "contrast", 0.5)
    assert oracles.softness(faint)[0] == pytest.approx(soft[1], abs=0.03)


def _bars(n, seed):
    """Digit-like strokes: a vertical bar 2 px wide (f = 0) or 4 px (f = 1), random height, place, colour
    and intensity: a stroke-width factor, like thin and thick, that blur alone can fake."""
    rng = np.random.default_rng(seed)
    f = np.arange(n) % 2
    x = np.zeros((n, 3, 28, 28), np.uint8)
    for i in range(n):
        w, top = 2 + 2 * f[i], rng.integers(2, 8)
        c = rng.integers(6, 22 - w)
        x[i, rng.integers(0, 2), top:top + rng.integers(12, 20), c:c + w] = rng.integers(180, 256)
    return x, f


def test_augmentation_keeps_a_stroke_width_call_under_blur(monkeypatch, one_thread):
    """The degraded-input test: trained on crisp strokes only, a factor oracle calls blurred thin strokes
    thick (blur widens them); trained with the robust recipe's degradations, it still reads the width."""
    x, f = _bars(3000, 0)
    xt, ft = _bars(1000, 100)
    called = {}
    for name, aug in (("paper", None), ("robust", oracles.AUGMENT)):
        net = oracles._new_net(2, 28, torch.device("cpu"), 0, (8, 16))
        oracles._fit(net, torch.from_numpy(x), torch.as_tensor(f), 6, torch.Generator().manual_seed(0), name, aug)
        for s in (0, 1.0):
            c = oracles._logits(net, robustness.degraded(xt, "blur", s)).argmax(1).numpy()
            called[name, s] = (np.mean(c == ft), c.mean())
    assert called["paper", 0][0] >= 0.99 and called["robust", 0][0] >= 0.99      # both read crisp strokes
    assert called["paper", 1.0][1] >= 0.75                                        # blurred: mostly "thick"
    assert called["robust", 1.0][0] >= 0.9 and abs(called["robust", 1.0][1] - 0.5) <= 0.05


def test_cache_key_changes_with_the_recipe(small_mnist_root, tmp_path, monkeypatch):
    key = lambda **kw: oracles.cache_path("thin", root=small_mnist_root, cache_dir=str(tmp_path), **kw)
    robust, paper = key(), key(recipe_name="paper")
    assert robust != paper and robust == key(recipe_name="robust")
    assert oracles.recipe(name="paper")["augment"] is None and oracles.recipe()["augment"] == oracles.AUGMENT
    monkeypatch.setattr(oracles, "AUGMENT", {**oracles.AUGMENT, "p_blur": 0.6})   # any change to the recipe ...
    assert key() != robust and key(recipe_name="paper") == paper                  # ... moves only its own key
    monkeypatch.setattr(oracles, "VERSION", oracles.VERSION + 1)
    assert key(recipe_name="paper") != paper
    with pytest.raises(ValueError, match="bogus"):
        oracles.recipe(name="bogus")


def test_smoke_oracles_carry_their_blur_profile(small_mnist_root, cache_dir):
    o = oracles.load_oracles("colour", root=small_mnist_root, cache_dir=cache_dir, device="cpu", smoke=True)
    assert set(o["blur"]) == {f"{s:g}" for s in oracles.BLUR_GRID} and o["recipe"] == "robust"
    soft = [o["blur"][f"{s:g}"]["softness"] for s in oracles.BLUR_GRID]
    assert soft == sorted(soft)                           # real digits look softer the more they are blurred
    assert o["blur_limit"] is None or o["blur_limit"] in oracles.BLUR_GRID


# --------------------------------------------------------------------------- real MNIST: the accuracy target
FULL = os.environ.get("RGF_FULL") == "1"


@pytest.mark.parametrize("factor", [pytest.param(f, marks=pytest.mark.skipif(
    f != "colour" and not FULL, reason="morphological oracles take minutes each: set RGF_FULL=1"))
    for f in data.FACTORS])
def test_accuracy_target_on_real_mnist(real_mnist_root, factor):
    """Issue 3: both oracles of every MNIST factor reach 98% on the 20,000 test images (paper: > 92%).
    Uses the default cache, so a cached oracle is checked without retraining."""
    o = oracles.load_oracles(factor, root=real_mnist_root, device="cpu")
    assert o["n_test"] == 20000
    assert o["acc"]["label"] >= 0.98 and o["acc"]["factor"] >= 0.98, o["acc"]
