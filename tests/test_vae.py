"""vae.py: model shapes (28x28 and 64x64), the loss (KL formula, beta), colour-faithful sampling, NaN stop
(one line, exit 1, the last good checkpoint kept), the mixture prior of --prior gmm (EM recovers a known
mixture; switching the prior resamples without retraining), the --smoke protocol end to end on the MNIST
fixture, resume after an interruption, --force, run names for beta != 1, bad input (one line, exit 2) and
import without side effects.

    python -m pytest -q tests/test_vae.py
"""
import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import data
import vae

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_EPOCH = vae.train_epoch


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


def hparams(**kw):
    return types.SimpleNamespace(**{"latent": 8, "width": 4, "lr": 1e-3, "batch_size": 16, "beta": 1.0, **kw})


def build(gen, size=28):
    """The VAE, its Adam optimiser and a disabled GradScaler (CPU), as vae.train builds them."""
    model = vae.build(hparams(), (3, size, size), torch.device("cpu"), gen)
    opt = torch.optim.Adam(model.parameters(), lr=hparams().lr, fused=True)
    return model, opt, torch.amp.GradScaler("cpu", enabled=False)


# --------------------------------------------------------------------------- model and loss
@pytest.mark.parametrize("size", [28, 64])
def test_shapes_for_mnist_and_cars(size):
    gen = torch.Generator().manual_seed(0)
    model, opt, scaler = build(gen, size)
    x = torch.rand(5, 3, size, size)
    logits, mu, logvar = model(x, gen)
    assert logits.shape == x.shape and mu.shape == logvar.shape == (5, 8)
    s = vae.sample(model, 7, gen)
    assert s.dtype == torch.uint8 and tuple(s.shape) == (7, 3, size, size)
    out = vae.train_epoch(model, opt, scaler, x, 0, hparams(batch_size=2), gen)
    assert set(out) == {"loss", "rec", "kl"} and all(np.isfinite(v) for v in out.values())
    val = vae.validate(model, x, beta=1.0)
    assert list(val) == ["val_loss", "val_rec", "val_kl"] and all(np.isfinite(v) for v in val.values())


def test_kl_matches_torch_distributions_and_beta_scales_it():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    x = torch.rand(4, 3, 28, 28, generator=g)
    logits = torch.randn(4, 3, 28, 28, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected_kl = torch.distributions.kl_divergence(q, p).sum() / 4
    loss1, rec, kl = vae.neg_elbo(logits, x, mu, logvar, beta=1.0)
    loss4, rec4, kl4 = vae.neg_elbo(logits, x, mu, logvar, beta=4.0)
    assert torch.allclose(kl, expected_kl, rtol=1e-5)
    assert torch.allclose(rec, torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits), x,
                                                                        reduction="sum") / 4, rtol=1e-4)
    assert torch.allclose(loss1, rec + kl) and torch.allclose(loss4, rec + 4 * kl)
    zero = vae.neg_elbo(logits, x, torch.zeros(4, 6), torch.zeros(4, 6))[2]
    assert float(zero) == 0.0


def test_samples_keep_each_colour_channel():
    """A decoder that outputs pure red must give pure red uint8 samples: no grey averaging, RGB order."""
    gen = torch.Generator().manual_seed(0)
    model = build(gen)[0]
    last = model.decoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([20.0, -20.0, -20.0]))
    s = vae.sample(model, 3, gen)
    assert (s[:, 0] == 255).all() and (s[:, 1:] == 0).all()


def test_nan_loss_is_reported_and_ends_the_epoch_early():
    gen = torch.Generator().manual_seed(0)
    model, opt, scaler = build(gen)
    x = torch.rand(32, 3, 28, 28)
    x[17, 0, 5, 5] = float("nan")          # in some batch of the epoch, not necessarily a checked one
    out = vae.train_epoch(model, opt, scaler, x, 0, hparams(batch_size=1), gen)
    assert not math.isfinite(out["loss"])
    steps = []                             # every image NaN: the first check (batch 1) ends the pass
    opt.step = lambda *a, **k: steps.append(1)
    vae.train_epoch(model, opt, scaler, torch.full_like(x, float("nan")), 0, hparams(batch_size=1), gen)
    assert len(steps) == 1


def test_training_is_deterministic_for_a_seed():
    x = torch.rand(32, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    runs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(5)
        model, opt, scaler = build(gen)
        runs.append(vae.train_epoch(model, opt, scaler, x, 0, hparams(batch_size=8), gen))
    assert runs[0] == runs[1]


def test_names():
    assert vae.names(1.0) == ("VAE", "vae")
    assert vae.names(4.0) == ("VAE-b4", "vae-b4")
    assert vae.names(0.5) == ("VAE-b0.5", "vae-b0.5")
    assert vae.names(1.0, "gmm") == ("VAE-mix", "vae-mix") and vae.names(4.0, "gmm") == ("VAE-b4-mix", "vae-b4-mix")


# --------------------------------------------------------------------------- the protocol, end to end
@pytest.fixture
def smoke(mnist_root, cache_dir, tmp_path):
    """main() with --smoke on the MNIST fixture (or real MNIST, limited to 300 digits by the preset)."""
    def run(*argv, out="runs"):     # N(0, I) alone unless asked: both readings are tested on their own
        prior = [] if "--prior" in argv else ["--prior", "normal"]
        return vae.main(["--smoke", "--device", "cpu", "--data-root", mnist_root, "--cache-dir", cache_dir,
                         "--runs", str(tmp_path / out), *prior, *argv])
    return run


def count_epochs(monkeypatch, crash_at=None):
    """Wrap vae.train_epoch: count calls; raise KeyboardInterrupt at the given (0-based) call."""
    calls = []

    def wrapped(model, opt, scaler, x, epoch, args, gen):
        if len(calls) == crash_at:
            raise KeyboardInterrupt
        calls.append(epoch)
        return TRAIN_EPOCH(model, opt, scaler, x, epoch, args, gen)
    monkeypatch.setattr(vae, "train_epoch", wrapped)
    return calls


def test_smoke_run_end_to_end(smoke, tmp_path):
    res = smoke()
    assert res["model"] == "VAE" and res["run_name"] == "vae" and res["factor"] == "colour"
    cell = tmp_path / "runs" / "vae" / "colour-rare1-seed0"
    saved = json.loads((cell / "result.json").read_text())
    assert saved["counts"] == res["counts"] and sum(saved["counts"]["r"]["n"]) == 100
    for c in (cell, tmp_path / "runs" / "vae" / "colour-balanced-seed0"):
        x = np.load(c / "samples.npz")["x"]
        assert x.dtype == np.uint8 and x.shape == (100, 3, 28, 28)
        assert (c / "samples.png").exists()
        ck = torch.load(c / "ckpt.pt", weights_only=False)
        assert ck["epoch"] == 1 and set(ck["state"]) == {"vae", "opt", "scaler"}
        assert {"loss", "rec", "kl", "val_loss", "val_rec", "val_kl"} <= set(ck["history"][0])


def test_one_trained_model_is_read_from_both_priors(smoke, tmp_path, monkeypatch):
    """--prior each (the default): each model trains once and is sampled from N(0, I) (VAE, runs/vae/) and
    from the mixture (VAE-mix, runs/vae-mix/, no checkpoint of its own); the N(0, I) reading is the one
    --prior normal alone gives, number for number."""
    calls = count_epochs(monkeypatch)
    res = smoke("--prior", "each")
    assert calls == [0, 0]                           # D_u and D_r, one epoch each: trained once for both
    mix = json.loads((tmp_path / "runs/vae-mix/colour-rare1-seed0/result.json").read_text())
    assert (mix["model"], mix["run_name"], mix["config"]["prior"]) == ("VAE-mix", "vae-mix", "gmm")
    assert (res["model"], res["config"]["prior"]) == ("VAE", "normal")
    for cell in ("colour-balanced-seed0", "colour-rare1-seed0"):
        assert not (tmp_path / "runs/vae-mix" / cell / "ckpt.pt").exists()
        a, b = (np.load(tmp_path / "runs" / run / cell / "samples.npz")["x"] for run in ("vae", "vae-mix"))
        assert a.shape == b.shape and not np.array_equal(a, b)
    alone = smoke("--prior", "normal", out="alone")
    assert alone["counts"] == res["counts"] and not (tmp_path / "alone/vae-mix").exists()


def test_nan_in_training_exits_1_and_keeps_the_last_good_checkpoint(smoke, tmp_path, monkeypatch, capsys):
    """A NaN pixel in epoch 2 poisons the loss: one line naming the epoch, exit 1, epoch 1's model kept."""
    def poisoned(model, opt, scaler, x, epoch, args, gen):
        if epoch == 1:
            x = x.clone()
            x[3, 0, 5, 5] = float("nan")
        return TRAIN_EPOCH(model, opt, scaler, x, epoch, args, gen)
    monkeypatch.setattr(vae, "train_epoch", poisoned)
    with pytest.raises(SystemExit) as e:
        smoke("--epochs", "2", "--stage", "u")
    assert e.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]   # (tqdm bars aside)
    assert len(err) == 1 and "non-finite loss in epoch 2" in err[0] and "loss=nan" in err[0], err
    ck = torch.load(tmp_path / "runs/vae/colour-balanced-seed0/ckpt.pt", weights_only=False)
    assert ck["epoch"] == 1 and all(torch.isfinite(v).all() for v in ck["state"]["vae"].values())


def test_resume_after_interruption_matches_an_uninterrupted_run(smoke, tmp_path, monkeypatch):
    full = smoke("--epochs", "2", out="a")
    count_epochs(monkeypatch, crash_at=1)            # interrupted during D_u's second epoch
    with pytest.raises(KeyboardInterrupt):
        smoke("--epochs", "2", out="b")
    calls = count_epochs(monkeypatch)
    resumed = smoke("--epochs", "2", out="b")
    assert calls == [1, 0, 1]                        # D_u resumes at epoch 2, then D_r trains both epochs
    assert resumed["counts"] == full["counts"]
    for cell in ("colour-balanced-seed0", "colour-rare1-seed0"):
        a = torch.load(tmp_path / "a/vae" / cell / "ckpt.pt", weights_only=False)
        b = torch.load(tmp_path / "b/vae" / cell / "ckpt.pt", weights_only=False)
        for k, v in a["state"]["vae"].items():
            assert torch.equal(v, b["state"]["vae"][k]), k
        assert np.array_equal(np.load(tmp_path / "a/vae" / cell / "samples.npz")["x"],
                              np.load(tmp_path / "b/vae" / cell / "samples.npz")["x"])


def test_finished_cell_is_reused_and_force_retrains(smoke, monkeypatch):
    smoke()
    calls = count_epochs(monkeypatch)
    smoke()
    assert calls == []
    smoke("--force")
    assert calls == [0, 0]                           # D_u and D_r, one epoch each


def test_beta_gets_its_own_name_and_folder(smoke, tmp_path):
    assert smoke("--beta", "4", "--stage", "u") is None
    ck = torch.load(tmp_path / "runs/vae-b4/colour-balanced-seed0/ckpt.pt", weights_only=False)
    assert ck["config"]["beta"] == 4.0
    assert not (tmp_path / "runs/vae").exists()


def test_fit_gmm_recovers_a_known_mixture_and_repeats_for_a_seed():
    """Three well-separated Gaussians in 2-d, weights 0.5/0.3/0.2: EM finds their weights, means and
    covariances, and the same generator seed gives the same fit."""
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]], dtype=torch.float64)
    scales = torch.tensor([[1.0, 0.5], [0.5, 2.0], [1.5, 1.5]], dtype=torch.float64)
    j = torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), 6000, replacement=True, generator=g)
    z = means[j] + scales[j] * torch.randn(6000, 2, generator=g, dtype=torch.float64)
    fits = [data.fit_gmm(z, 3, torch.Generator().manual_seed(1)) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*fits))
    w, mean, chol = fits[0]
    order = [int((mean - m).norm(dim=1).argmin()) for m in means]
    assert sorted(order) == [0, 1, 2]
    assert torch.allclose(w[order], torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), atol=0.03)
    assert torch.allclose(mean[order], means, atol=0.15)
    sd = torch.diagonal(chol @ chol.mT, dim1=1, dim2=2).sqrt()[order]
    assert torch.allclose(sd, scales, rtol=0.1)


def test_samples_from_the_mixture_prior_follow_its_components():
    """sample(prior=...) draws z from the mixture: with an identity decoder the images' means sit at the
    components' means, in proportion to their weights."""
    model = types.SimpleNamespace(latent=2, eval=lambda: None, decode=lambda z: z[:, :, None, None].expand(-1, 2, 1, 1))
    eye = torch.eye(2, dtype=torch.float64).expand(2, 2, 2) * 0.01
    prior = (torch.tensor([0.8, 0.2], dtype=torch.float64),
             torch.tensor([[-3.0, -3.0], [3.0, 3.0]], dtype=torch.float64), eye)
    x = vae.sample(model, 2000, torch.Generator().manual_seed(0), prior)
    high = (x[:, 0, 0, 0] > 127).double().mean().item()            # sigmoid(3) vs sigmoid(-3)
    assert abs(high - 0.2) < 0.03


def test_the_prior_is_a_sampling_option_a_finished_run_resamples_without_training(smoke, tmp_path, monkeypatch):
    smoke()
    calls = count_epochs(monkeypatch)
    res = smoke("--prior", "gmm", "--components", "3")
    assert calls == []                               # the trained models kept; only the samples redone
    cell = tmp_path / "runs" / "vae-mix" / "colour-rare1-seed0"
    assert json.loads((cell / "result.json").read_text())["config"]["components"] == 3
    assert sum(res["counts"]["r"]["n"]) == 100


# --------------------------------------------------------------------------- command line
def run_cli(*argv, cwd=REPO):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, os.path.join(REPO, "vae.py"), *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv, words", [
    (["--beta", "0"], ["--beta 0", "> 0"]),
    (["--beta", "-2"], ["--beta", "-2"]),
    (["--samples", "0"], ["--samples", ">= 1"]),
    (["--factor", "purple"], ["purple", "colour"]),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, tmp_path):
    r = run_cli(*argv, "--runs", str(tmp_path))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("opt, value", [("beta", float("nan")), ("beta", float("inf")), ("latent", 0),
                                        ("width", 0), ("components", 0)])
def test_check_rejects_bad_model_options(opt, value):
    good = types.SimpleNamespace(beta=1.0, latent=20, width=32, components=50)
    assert vae.check(good) is None
    msg = vae.check(types.SimpleNamespace(**{**vars(good), opt: value}))
    assert msg and f"--{opt}" in msg and "\n" not in msg


def test_import_has_no_side_effects(tmp_path):
    code = "import sys; sys.argv = ['x', '--beta', '-1']; import vae; print(sorted(vae.PRESETS))"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['quick', 'smoke']" and r.stderr == ""
    assert os.listdir(tmp_path) == []
