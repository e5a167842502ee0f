"""gan.py: model shapes (28x28 and 64x64 cars), the spectral-decoupling term and its schedule, run names,
an end-to-end --smoke run on the fixture (result, grids, Figure 3 CSV and plot), resume after an
interruption (same result as an uninterrupted run), --force, bad input (one line, exit 2) and an import
without side effects.

    python -m pytest -q tests/test_gan.py
"""
import csv
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import data
import gan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _args(**kw):
    base = dict(width=32, spectral_norm=True, pack=2, lr=2e-4, sd_lambda=0.0, sd_epochs=80, epochs=200, batch_size=64,
                cpu_bf16=False)
    return types.SimpleNamespace(**{**base, **kw})


# --------------------------------------------------------------------------- model and loss
@pytest.mark.parametrize("shape, first, stages", [((3, 28, 28), 7, 2), ((3, 64, 64), 8, 3)])
def test_shapes_and_stages(shape, first, stages):
    gen = torch.Generator().manual_seed(0)
    G, D = gan.build(_args(width=8), shape, torch.device("cpu"), gen)
    assert G.net[1].unflattened_size == (8 * 2 ** stages, first, first)   # 4w x 7 x 7 for MNIST
    x = G(torch.randn(5, gan.LATENT))
    assert x.shape == (5,) + shape and x.min() >= -1 and x.max() <= 1
    assert D(torch.cat([x, x[:1]])).shape == (3,)              # one logit per pack of 2
    assert gan.BETAS == (0.5, 0.999) and gan.LR == 2e-4 and gan.BATCH_SIZE == 64   # the paper's GAN settings
    s = gan.sample(G, 7, torch.Generator().manual_seed(1))
    assert s.dtype == torch.uint8 and s.shape == (7,) + shape


def test_spectral_norm_bounds_every_d_layer():
    torch.manual_seed(0)
    D = gan.Discriminator((3, 28, 28), width=8)
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 4 and all(hasattr(m, "parametrizations") for m in layers)
    D.train()
    for _ in range(30):                 # power iteration converges while D runs in training mode
        D(torch.randn(2, 3, 28, 28))
    D.eval()
    for m in layers:                    # the weight D uses has spectral norm ~1 (of its matrix view)
        assert torch.linalg.matrix_norm(m.weight.flatten(1), ord=2).item() == pytest.approx(1.0, abs=0.05)
    plain = gan.Discriminator((3, 28, 28), width=8, spectral_norm=False)
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


def test_d_judges_packs_of_images():
    """PacGAN: D's logit for a pack is its conv net on the pack's images stacked on the channels, so
    it depends on every image of the pack and on nothing outside it."""
    torch.manual_seed(0)
    D = gan.Discriminator((3, 28, 28), width=8, pack=2).eval()
    x = torch.rand(6, 3, 28, 28) * 2 - 1
    logits = D(x)
    assert logits.shape == (3,)
    assert torch.allclose(logits[1], D.net(torch.cat([x[2], x[3]])[None]).squeeze(), atol=1e-6)
    y = x.clone()
    y[3] = -1                                             # change the second image of pack 1 only
    changed = D(y)
    assert changed[1] != logits[1] and torch.equal(changed[[0, 2]], logits[[0, 2]])
    assert gan.Discriminator((3, 28, 28), width=8, pack=1)(x).shape == (6,)


def test_figure3_packs_each_group_among_itself():
    torch.manual_seed(0)
    D = gan.Discriminator((3, 28, 28), width=8, pack=2).eval()
    x = torch.rand(7, 3, 28, 28)
    y, f = torch.tensor([0, 0, 0, 1, 1, 0, 1]), torch.tensor([0, 0, 0, 0, 0, 1, 1])
    out = gan.real_loss_by_group(D, x, y, f)
    assert set(out) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    logit = D(x[[0, 1, 2, 0]] * 2 - 1)                   # class 0 plain: packs (0, 1) and (2, 0)
    assert out[(0, 0)] == pytest.approx(torch.nn.functional.softplus(-logit).mean().item(), rel=1e-5)
    alone = D(x[[5, 5]] * 2 - 1)                         # a group of one image: packed with itself
    assert out[(0, 1)] == pytest.approx(torch.nn.functional.softplus(-alone).item(), rel=1e-5)


def test_build_is_a_function_of_the_generator_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    a = gan.build(_args(width=8), (3, 28, 28), torch.device("cpu"), torch.Generator().manual_seed(3))
    b = gan.build(_args(width=8), (3, 28, 28), torch.device("cpu"), torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), before)
    for net_a, net_b in zip(a, b):
        for p, q in zip(net_a.parameters(), net_b.parameters()):
            assert torch.equal(p, q)


def test_spectral_decoupling_term_on_real_logits_only():
    torch.manual_seed(0)
    D = gan.Discriminator((3, 28, 28), width=8).eval()    # eval: spectral norm's power iteration holds still
    real, fake = torch.rand(16, 3, 28, 28) * 2 - 1, torch.rand(16, 3, 28, 28) * 2 - 1
    lr_, lf = D(real), D(fake)
    bce = torch.nn.functional.softplus
    plain = (bce(-lr_).mean() + bce(lf).mean()).item()   # -log sigmoid(l) = softplus(-l)
    assert gan.d_loss(D, real, fake, 0.0).item() == pytest.approx(plain, rel=1e-5)
    sd = gan.d_loss(D, real, fake, 0.8).item()
    assert sd == pytest.approx(plain + 0.8 / 2 * (lr_ ** 2).mean().item(), rel=1e-5)  # lambda/2 * mean
    # the fake batch carries no SD term: the penalty is the same whatever fake batch D sees
    other = torch.rand(16, 3, 28, 28) * 2 - 1
    diff = gan.d_loss(D, real, other, 0.8) - gan.d_loss(D, real, other, 0.0)
    assert diff.item() == pytest.approx(sd - plain, rel=1e-5)


def test_sd_schedule_and_names():
    args = _args(sd_lambda=0.8, sd_epochs=3, epochs=5)
    assert [gan.sd_active(e, args) for e in range(5)] == [True, True, True, False, False]
    assert not any(gan.sd_active(e, _args(sd_lambda=0.0)) for e in range(5))
    assert gan.names(0.0) == ("GAN", "gan")
    assert gan.names(0.8) == ("GAN-SD", "gan-sd")
    assert gan.names(0.4) == ("GAN-SD", "gan-sd0.4") and gan.names(1.6)[1] == "gan-sd1.6"


def test_sd_epochs_default_follows_epochs():
    parse = lambda *argv: data.parse_args(gan.build_parser(), list(argv), presets=gan.PRESETS, check=gan.check)
    assert parse().sd_epochs == 80 and parse().epochs == 200 and parse().sd_lambda == 0   # the paper's
    assert parse("--epochs", "10").sd_epochs == 4 and parse("--epochs", "1").sd_epochs == 1
    quick = parse("--quick")
    assert quick.sd_epochs == max(1, round(0.4 * quick.epochs)) < 80
    assert parse("--epochs", "10", "--sd-epochs", "10").sd_epochs == 10


def _scaler():
    return torch.amp.GradScaler("cpu", enabled=False)


def _optimizers(G, D, args):
    """Adam for G and D, as gan.train makes them."""
    return [torch.optim.Adam(m.parameters(), lr=args.lr, betas=gan.BETAS, fused=True) for m in (G, D)]


def test_train_epoch_learns_and_is_deterministic():
    x = torch.rand(256, 3, 28, 28)
    args = _args(width=8, sd_lambda=0.8, sd_epochs=1, epochs=2)
    runs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(0)
        G, D = gan.build(args, (3, 28, 28), torch.device("cpu"), gen)
        opt_g, opt_d = _optimizers(G, D, args)
        runs.append([gan.train_epoch(G, D, opt_g, opt_d, _scaler(), x, e, args, gen) for e in range(2)])
    assert runs[0] == runs[1]
    assert runs[0][0]["sd_lambda"] == 0.8 and runs[0][1]["sd_lambda"] == 0.0
    assert all(np.isfinite(v) for r in runs[0] for v in r.values())


def test_ema_follows_g_and_standing_stats_are_its_own():
    x = torch.rand(128, 3, 28, 28)
    args = _args(width=8, epochs=1)
    gen = torch.Generator().manual_seed(0)
    G, D = gan.build(args, (3, 28, 28), torch.device("cpu"), gen)
    ema = data.EMA(G, 0.9)
    start = [p.clone() for p in ema.net.parameters()]
    gan.train_epoch(G, D, *_optimizers(G, D, args), _scaler(), x, 0, args, gen, ema)
    assert ema.updates.item() == 2                                        # 128 digits = 2 batches of 64
    for e, s, p in zip(ema.net.parameters(), start, G.parameters()):
        assert not torch.equal(e, s) and not torch.equal(e, p)           # moved, but not onto G
    bn = next(m for m in ema.net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))   # averaging leaves buffers alone
    draws = []
    for _ in range(2):
        gan.standing_stats(ema.net, torch.Generator().manual_seed(3), n=2000, batch=500)
        draws.append(gan.sample(ema.net, 5, torch.Generator().manual_seed(4)))
    assert torch.equal(draws[0], draws[1]) and not ema.net.training and bn.momentum == 0.1
    assert bn.running_mean.abs().sum() > 0 and bn.num_batches_tracked.item() == 4
    # the statistics are the EMA net's own: its activations' mean over the latents seen
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        z = torch.cat([torch.randn(500, gan.LATENT, generator=g) for _ in range(4)])
        assert ema.net.net[2] is bn
        mean = ema.net.net[0:2](z).mean((0, 2, 3))                       # the input of that BatchNorm
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)


# --------------------------------------------------------------------------- the protocol, end to end
def _run(tmp_path, mnist_root, cache_dir, *extra):
    return gan.main(["--smoke", "--data-root", mnist_root, "--cache-dir", cache_dir,
                     "--runs", str(tmp_path / "runs"), *extra])


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_smoke_end_to_end_with_sd(tmp_path, mnist_root, cache_dir):
    res = _run(tmp_path, mnist_root, cache_dir, "--sd-lambda", "0.8")
    assert res["model"] == "GAN-SD" and res["run_name"] == "gan-sd"
    u, r = (tmp_path / "runs" / "gan-sd" / d for d in ("colour-balanced-seed0", "colour-rare1-seed0"))
    for name in ("ckpt.pt", "samples.png", "samples.npz", "disc_loss.csv"):
        assert (u / name).exists() and (r / name).exists()
    assert (r / "result.json").exists() and (r / "disc_loss.png").stat().st_size > 1000
    assert sum(row["n_r"] for row in res["rows"][:-1]) == res["samples"] == 64
    rows = _read_csv(r / "disc_loss.csv")   # every class, both factor values, SD flagged (epoch 1 <= 1)
    assert {(row["class"], row["factor"]) for row in rows} >= {("1", "1")}
    assert all(row["sd"] == "1" and float(row["loss"]) > 0 for row in rows)
    assert len({row["class"] for row in _read_csv(u / "disc_loss.csv")}) == 10   # D_u: all classes
    hist = res["history"]["r"][-1]
    assert hist["sd_lambda"] == 0.8
    # Figure 3's data travel in result.json, so ztest can redraw it from committed results
    fig3 = res["disc_loss"]
    assert {f for _, f, _, _ in fig3["r"]} == {f for _, f, _, _ in fig3["u"]} == {0, 1}   # the balanced val digits
    assert res["sd_epochs"] == 1 and all(np.isfinite(loss) for _, _, loss, _ in fig3["u"])


def test_finished_cell_is_not_retrained_unless_forced(tmp_path, mnist_root, cache_dir, capsys):
    _run(tmp_path, mnist_root, cache_dir)
    ck = tmp_path / "runs" / "gan" / "colour-rare1-seed0" / "ckpt.pt"
    mtime = ck.stat().st_mtime_ns
    capsys.readouterr()
    _run(tmp_path, mnist_root, cache_dir)
    assert "already done" in capsys.readouterr().out and ck.stat().st_mtime_ns == mtime
    _run(tmp_path, mnist_root, cache_dir, "--force")
    assert ck.stat().st_mtime_ns != mtime


def test_resume_after_interruption_gives_the_same_result(tmp_path, mnist_root, cache_dir, monkeypatch):
    # 3 epochs with SD in the first 2: the interruption (mid epoch 3) falls after the SD phase ends
    argv = ("--stage", "u", "--epochs", "3", "--sd-lambda", "0.4", "--sd-epochs", "2")
    _run(tmp_path / "a", mnist_root, cache_dir, *argv)
    real_train = gan.train_epoch

    def crash_in_epoch_3(G, D, opt_g, opt_d, scaler, x, epoch, args, gen, ema):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_train(G, D, opt_g, opt_d, scaler, x, epoch, args, gen, ema)

    monkeypatch.setattr(gan, "train_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", mnist_root, cache_dir, *argv)
    monkeypatch.setattr(gan, "train_epoch", real_train)
    cell = os.path.join("runs", "gan-sd0.4", "colour-balanced-seed0")
    assert torch.load(tmp_path / "b" / cell / "ckpt.pt", weights_only=False)["epoch"] == 2
    _run(tmp_path / "b", mnist_root, cache_dir, *argv)
    with np.load(tmp_path / "a" / cell / "samples.npz") as a, np.load(tmp_path / "b" / cell / "samples.npz") as b:
        assert np.array_equal(a["x"], b["x"])
    assert _read_csv(tmp_path / "a" / cell / "disc_loss.csv") == _read_csv(tmp_path / "b" / cell / "disc_loss.csv")
    ha = [{k: v for k, v in h.items() if k != "seconds"} for h in _read_csv(tmp_path / "a" / cell / "history.csv")]
    hb = [{k: v for k, v in h.items() if k != "seconds"} for h in _read_csv(tmp_path / "b" / cell / "history.csv")]
    assert ha == hb and len(ha) == 3


# --------------------------------------------------------------------------- bad input, import
@pytest.mark.parametrize("argv, words", [
    (["--sd-lambda", "-0.1"], "--sd-lambda"),
    (["--sd-lambda", "nan"], "--sd-lambda"),
    (["--ema-decay", "1"], "--ema-decay"),
    (["--width", "0"], "--width"),
    (["--pack", "0"], "--pack"),
    (["--pack", "3"], "--pack"),                     # does not divide the batch of 64
    (["--epochs", "10", "--sd-epochs", "11"], "--sd-epochs"),
    (["--samples", "0"], "--samples"),
    (["--factor", "blue"], "blue"),
    (["--dataset", "svhn"], "svhn"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        gan.main(argv + ["--runs", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and words in err and len(err.splitlines()) == 1
    assert not os.listdir(tmp_path)


def test_bad_input_from_the_command_line(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(REPO, "gan.py"), "--sd-lambda", "-1", "--runs", str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--sd-lambda" in p.stderr
    assert not os.listdir(tmp_path)


def test_import_has_no_side_effects(tmp_path):
    code = "import sys; sys.argv = ['gan.py', '--bogus']; import gan; print('ok')"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert p.returncode == 0 and p.stdout == "ok\n" and not os.listdir(tmp_path)
