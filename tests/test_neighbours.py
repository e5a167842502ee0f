"""The nearest-neighbour check (study/neighbours.py): a model that copies its training images reads as one,
a model that draws new images from the same distribution does not, and bad input is one line."""
import json
from pathlib import Path

import numpy as np
import pytest

from study import neighbours

ROOT = Path(__file__).resolve().parent.parent


def test_nearest_matches_brute_force_and_leaves_one_out():
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(37, 3, 4, 4)), rng.normal(size=(300, 3, 4, 4))
    d, i = neighbours.nearest(q, r, chunk=16)
    full = np.linalg.norm(q.reshape(37, 1, -1) - r.reshape(1, 300, -1), axis=2)
    assert np.array_equal(i, full.argmin(1)) and np.allclose(d, full.min(1), rtol=1e-5)
    d_self, i_self = neighbours.nearest(r[:20], r, exclude_self=True, chunk=7)
    assert (d_self > 0).all() and not (i_self == np.arange(20)).any()


def _world(seed=0, n_train=600, dim=20):
    """Training "images" from one distribution, and a generator that copies them or draws anew."""
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n_train, dim))
    copies = train[rng.choice(n_train, 300)] + rng.normal(scale=0.01, size=(300, dim))
    fresh = rng.normal(size=(300, dim))
    return train, copies, fresh


def test_a_copying_model_reads_as_copies_and_a_fresh_one_does_not():
    train, copies, fresh = _world()
    c = neighbours.compare(copies, train, 200, np.random.default_rng(1))
    f = neighbours.compare(fresh, train, 200, np.random.default_rng(1))
    assert c["copies"] > 0.95 and c["ratio"] < 0.05, c
    assert f["copies"] < 0.2 and 0.8 < f["ratio"] < 1.25, f        # as far from the data as the data itself
    assert c["n_samples"] == f["n_samples"] == 200 and c["n_train"] == 600
    assert len(c["index"]) == 200 and max(c["index"]) < 600


def test_compare_needs_samples_and_training_images():
    train, _, fresh = _world()
    with pytest.raises(ValueError, match="needs samples"):
        neighbours.compare(fresh[:0], train, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 2 training"):
        neighbours.compare(fresh, train[:1], 10, np.random.default_rng(0))


def test_the_other_digit_is_the_most_drawn_one_that_is_not_rare():
    assert neighbours.other_digit([1, 1, 1, 7, 7, 3], rare=1) == 7
    assert neighbours.other_digit([2, 2, 5], rare=5) == 2


def _fails(capsys, argv, *words):
    with pytest.raises(SystemExit) as e:
        neighbours.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and all(w in err[0] for w in words), err


def test_bad_input_is_one_line(tmp_path, capsys):
    _fails(capsys, [tmp_path / "nothing"], "no such folder")
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text((ROOT / "results/quick/gan/colour-rare1-seed0/result.json").read_text())
    _fails(capsys, [run], "no samples.npz")
    _fails(capsys, [run, "--digits", "one"], "--digits 'one'")
    _fails(capsys, [run, "--digits", "12"], "digits 0..9")
    (tmp_path / "afile").write_text("x")
    _fails(capsys, [run, "--out-dir", tmp_path / "afile"], "--out-dir", "is a file")
    _fails(capsys, [run, "--panel", tmp_path / "nn.jpg"], "--panel", ".png")
    _fails(capsys, [run, tmp_path / "nothing"], "nothing: no such folder")     # every run checked first
    assert sorted(p.name for p in run.iterdir()) == ["result.json"]       # nothing written
    json.loads((run / "result.json").read_text())


def test_the_panel_draws_every_run_small_enough_to_commit(tmp_path):
    rng = np.random.default_rng(0)               # noise: the worst case for PNG compression
    stats = {"pixels": {"ratio": 1.19}, "features": {"ratio": 1.2}}
    checks = [({"cell": f"{run}/colour-rare1-seed0", "rare": 1, "digits": {1: stats, 8: stats}},
               {1: (rng.integers(0, 256, (8, 3, 28, 28), dtype=np.uint8),
                    rng.integers(0, 256, (8, 3, 28, 28), dtype=np.uint8))})
              for run in ("vae", "vae-mix", "gan", "gan-sd", "ddpm")]
    neighbours.panel(checks, tmp_path / "nn.png")
    from PIL import Image
    image = Image.open(tmp_path / "nn.png")
    assert image.size[1] > image.size[0] and (tmp_path / "nn.png").stat().st_size < 150_000   # five runs, tall
