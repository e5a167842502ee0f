"""ddpm.py: the diffusion equations (schedule, posterior, both samplers), the U-Net's shapes (28x28 and
64x64 cars) and its use of t, the EMA, an end-to-end --smoke run on the fixture, resume after an
interruption (same samples as an uninterrupted run), --force, bad input (one line, exit 2) and an import
without side effects.

    python -m pytest -q tests/test_ddpm.py
"""
import csv
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
import ddpm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _args(**kw):
    """Ho et al.'s settings (linear schedule, eps, unweighted L_simple, constant rate, default init)
    unless a test asks for ours."""
    base = dict(width=8, res_blocks=1, patch=1, ema_decay=0.9, lr=1e-3, batch_size=16, sample_steps=0,
                eta=0.0, sample_batch=1000, sampler="test", epochs=2, schedule="linear", prediction="eps",
                snr_gamma=0.0, warmup=0, lr_decay="none", zero_init=False, cpu_bf16=False)
    return types.SimpleNamespace(**{**base, **kw})


# --------------------------------------------------------------------------- the equations
def test_schedule_matches_ho_et_al():
    s = {k: v.double() for k, v in ddpm.schedule("cpu").items()}
    # the reference, from scratch in float64: beta linear 1e-4..0.02, alpha_bar_t = prod_{s<=t} (1 - beta_s)
    beta = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ab = torch.tensor(np.cumprod(1 - beta.numpy()))
    abp = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    assert ddpm.T == 1000 and torch.allclose(s["beta"], beta, rtol=1e-6)
    assert torch.allclose(s["abar"], ab, rtol=1e-6) and s["abar"][-1].item() < 1e-4   # x_T: almost pure noise
    assert s["post_var"][0].item() == 0.0                                              # beta~_1 = 0
    assert torch.allclose(s["post_var"], beta * (1 - abp) / (1 - ab), rtol=1e-6)       # eq. 7
    # Algorithm 2, line 4: mu~_t(x_t, x_0(eps)) = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps)
    x_t, eps = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    for i in (0, 10, 500, 999):
        x0 = (x_t - (1 - ab[i]).sqrt() * eps) / ab[i].sqrt()
        mean = s["coef_x0"][i] * x0 + s["coef_xt"][i] * x_t
        line4 = (x_t - beta[i] / (1 - ab[i]).sqrt() * eps) / (1 - beta[i]).sqrt()
        assert torch.allclose(mean, line4, rtol=1e-4, atol=1e-5)


def test_cosine_schedule_matches_nichol_and_dhariwal():
    s = {k: v.double() for k, v in ddpm.schedule("cpu", "cosine").items()}
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    for i in (0, 100, 500, 900):                    # index i is t = i + 1; alpha_bar_t = f(t) / f(0), eq. 17
        assert s["abar"][i].item() == pytest.approx(f(i + 1) / f(0), rel=1e-5)
    assert s["beta"].max().item() <= 0.999 + 1e-6 and s["abar"][-1].item() < 1e-6
    for i in (0, 500, 998):                         # SNR_t = abar_t / (1 - abar_t), kept exact near t = 1
        ab = f(i + 1) / f(0)
        assert s["snr"][i].item() == pytest.approx(ab / (1 - ab), rel=1e-4)


@pytest.mark.parametrize("schedule, prediction", [("linear", "eps"), ("cosine", "v")])
def test_ddim_with_eta_1_over_all_steps_is_algorithm_2(monkeypatch, schedule, prediction):
    """Song et al. (2021), section 4.1: DDIM with eta = 1 on every step is the DDPM ancestral sampler with
    the posterior variance; the two code paths must give the same images from the same noise."""
    monkeypatch.setattr(ddpm, "T", 100)       # the identity holds for any T; 100 steps keep the test fast
    torch.manual_seed(0)
    net = ddpm.UNet((3, 28, 28), width=8, res_blocks=1).eval()
    x = torch.randn(2, 3, 28, 28)
    kw = dict(schedule=schedule, prediction=prediction)
    a = ddpm.denoise(net, x, _args(sample_steps=0, **kw), torch.Generator().manual_seed(5))
    b = ddpm.denoise(net, x, _args(sample_steps=100, eta=1.0, **kw), torch.Generator().manual_seed(5))
    assert torch.allclose(a, b, atol=1e-3)
    c = ddpm.denoise(net, x, _args(sample_steps=10, **kw), torch.Generator().manual_seed(5))   # deterministic DDIM
    assert not torch.allclose(a, c, atol=1e-2)
    assert ddpm.timesteps(_args(sample_steps=0)) == list(range(99, -1, -1))
    monkeypatch.setattr(ddpm, "T", 1000)
    assert ddpm.timesteps(_args(sample_steps=10)) == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]


def test_loss_weightings_are_one_x0_error_weighted_by_min_snr():
    """eps- and v-prediction with min-SNR-gamma both equal mean(min(SNR_t, gamma) |x0_hat - x0|^2) for
    the same x0 guess (Hang et al. 2023); gamma = 0 with eps is Ho et al.'s L_simple."""
    sch = ddpm.schedule("cpu", "cosine")
    x0, delta = torch.rand(6, 3, 28, 28) * 2 - 1, 0.1 * torch.randn(6, 3, 28, 28)

    def guessing(prediction):                # a "network" whose x_0 estimate is x0 + delta
        def net(x_t, t):
            ab = sch["abar"][t].view(-1, 1, 1, 1)
            guess = x0 + delta
            if prediction == "eps":
                return (x_t - ab.sqrt() * guess) / (1 - ab).sqrt()
            return (ab.sqrt() * x_t - guess) / (1 - ab).sqrt()
        return net

    losses = {p: ddpm.diffusion_loss(guessing(p), x0, sch, torch.Generator().manual_seed(3),
                                     _args(prediction=p, snr_gamma=5.0)) for p in ("eps", "v")}
    t = torch.randint(0, ddpm.T, (6,), generator=torch.Generator().manual_seed(3))
    expect = (sch["snr"][t].view(-1, 1, 1, 1).clamp(max=5.0) * delta ** 2).mean()
    assert losses["eps"].item() == pytest.approx(expect.item(), rel=1e-3)
    assert losses["v"].item() == pytest.approx(expect.item(), rel=1e-3)
    # gamma = 0, eps: the unweighted MSE on the noise, eq. 14
    net = ddpm.UNet((3, 28, 28), width=8, res_blocks=1)
    g = torch.Generator().manual_seed(4)
    plain = ddpm.diffusion_loss(net, x0, sch, g, _args(schedule="cosine"))
    g = torch.Generator().manual_seed(4)
    t = torch.randint(0, ddpm.T, (6,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    ab = sch["abar"][t].view(-1, 1, 1, 1)
    assert plain.item() == pytest.approx(((net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t) - eps) ** 2).mean().item(), rel=1e-5)


def test_learning_rate_warm_up_and_cosine_decay():
    a = _args(lr=1e-3, warmup=10, lr_decay="cosine")
    lrs = [ddpm.learning_rate(s, 110, a) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3) and lrs[10] == pytest.approx(1e-3)
    assert lrs[60] == pytest.approx(0.5e-3) and lrs[-1] < 1e-6 and all(x >= y for x, y in zip(lrs[10:], lrs[11:]))
    assert ddpm.learning_rate(50, 110, _args(lr=1e-3, warmup=10)) == 1e-3        # Ho et al.: constant


def test_zero_init_makes_every_residual_branch_start_as_the_identity():
    net, _ = ddpm.build(_args(zero_init=True), (3, 28, 28), torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.equal(net(torch.randn(2, 3, 28, 28), torch.tensor([3, 700])), torch.zeros(2, 3, 28, 28))
    assert all(b.block2[-1].weight.abs().sum() == 0 for b in net.modules() if isinstance(b, ddpm.ResBlock))
    plain, _ = ddpm.build(_args(), (3, 28, 28), torch.device("cpu"), torch.Generator().manual_seed(0))
    assert plain.head[2].weight.abs().sum() > 0


# --------------------------------------------------------------------------- the network
@pytest.mark.parametrize("shape, patch", [((3, 28, 28), 1), ((3, 64, 64), 1), ((3, 28, 28), 2), ((3, 64, 64), 4)])
def test_shapes(shape, patch):
    net, ema = ddpm.build(_args(patch=patch), shape, torch.device("cpu"), torch.Generator().manual_seed(0))
    x = torch.randn(3, *shape)
    assert net(x, torch.tensor([0, 500, 999])).shape == x.shape
    s = ddpm.sample(ema.net, 5, _args(sample_steps=2), torch.Generator().manual_seed(1))
    assert s.dtype == torch.uint8 and s.shape == (5,) + shape
    # the EMA starts as a copy of the network, not as the network itself
    assert ema.net is not net and all(torch.equal(e, p) for e, p in zip(ema.net.parameters(), net.parameters()))
    with pytest.raises(ValueError, match="28x28"):
        ddpm.UNet((3, 32, 32))
    with pytest.raises(ValueError, match="patch 3"):
        ddpm.UNet((3, 28, 28), patch=3)


@pytest.mark.parametrize("width", [8, 16, 64])
def test_network_uses_the_time_step(width):
    """A well-known minimal DDPM ignores t; eps_theta(x_t, t) must depend on t, through every block."""
    torch.manual_seed(0)
    net = ddpm.UNet((3, 28, 28), width=width, res_blocks=1)
    x = torch.randn(4, 3, 28, 28).repeat(2, 1, 1, 1)                  # the same images at two steps
    t = torch.tensor([10] * 4 + [900] * 4)
    out = net(x, t)
    assert (out[:4] - out[4:]).abs().mean() > 0.05 * out.abs().mean()
    out.pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.temb.parameters())
    assert all(b.t_proj[1].weight.grad.abs().sum() > 0 for b in net.modules() if isinstance(b, ddpm.ResBlock))
    emb = ddpm.time_embedding(torch.tensor([0, 1, 999]), 8)
    assert emb.shape == (3, 8) and not torch.allclose(emb[1], emb[2])


def test_build_and_training_are_deterministic_and_ema_follows():
    x = torch.rand(48, 3, 28, 28)
    before = torch.get_rng_state()
    runs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(0)
        net, ema = ddpm.build(_args(), (3, 28, 28), torch.device("cpu"), gen)
        opt = torch.optim.Adam(net.parameters(), lr=_args().lr)
        runs.append(([ddpm.train_epoch(net, ema, opt, x, e, _args(), gen) for e in range(2)], net, ema))
    assert torch.equal(torch.get_rng_state(), before)                 # only `gen` was used
    assert runs[0][0] == runs[1][0] and all(np.isfinite(r["loss"]) for r in runs[0][0])
    _, net, ema = runs[0]
    assert ema.updates.item() == 6                                    # 2 epochs x 3 batches
    assert not any(p.requires_grad for p in ema.net.parameters())
    # what the checkpoint keeps of the EMA brings it back: the averaged weights and the step count
    back = data.EMA(ddpm.UNet((3, 28, 28), width=8, res_blocks=1), 0.9)
    back.load_state_dict(ema.state_dict())
    assert back.updates.item() == 6
    assert all(torch.equal(b, e) for b, e in zip(back.net.state_dict().values(), ema.net.state_dict().values()))
    w_e, w_n = ema.net.stem[1].weight.clone(), net.stem[1].weight.detach()
    ema.update(net)                                                   # e <- d e + (1 - d) p, d = min(0.9, 8/17)
    d = min(0.9, (1 + 7) / (10 + 7))
    assert torch.allclose(ema.net.stem[1].weight, d * w_e + (1 - d) * w_n, atol=1e-6)


# --------------------------------------------------------------------------- the protocol, end to end
def _run(tmp_path, mnist_root, cache_dir, *extra):
    return ddpm.main(["--smoke", "--data-root", mnist_root, "--cache-dir", cache_dir,
                      "--runs", str(tmp_path / "runs"), *extra])


def test_smoke_end_to_end_and_force(tmp_path, mnist_root, cache_dir, capsys):
    res = _run(tmp_path, mnist_root, cache_dir)
    assert res["model"] == "DM" and res["run_name"] == "ddpm"
    u, r = (tmp_path / "runs" / "ddpm" / d for d in ("colour-balanced-seed0", "colour-rare1-seed0"))
    for name in ("ckpt.pt", "samples.png", "samples.npz", "config.json", "history.csv"):
        assert (u / name).exists() and (r / name).exists()
    assert sum(row["n_r"] for row in res["rows"][:-1]) == res["samples"] == 64
    assert res["config"]["sampler"].startswith("DDIM, 5 of T=1000") and res["config"]["sample_steps"] == 5
    q = json.loads((r / "result.json").read_text())["quality"]
    assert q == data.json_safe(res["quality"]) and 0 <= q["u"]["confident"] <= 1 and sum(q["r"]["histogram"]) == 64
    ck = torch.load(r / "ckpt.pt", weights_only=False)
    assert set(ck["state"]) == {"unet", "ema", "opt"} and ck["state"]["ema"]["updates"].item() > 0
    # a finished cell is not redone; another sampler reuses the models (once result.json is gone)
    mtime = (r / "ckpt.pt").stat().st_mtime_ns
    capsys.readouterr()
    _run(tmp_path, mnist_root, cache_dir)
    assert "already done" in capsys.readouterr().out and (r / "ckpt.pt").stat().st_mtime_ns == mtime
    (r / "result.json").unlink()
    res = _run(tmp_path, mnist_root, cache_dir, "--sample-steps", "2", "--eta", "1")
    assert res["config"]["sampler"].startswith("DDIM, 2 of T=1000 steps, eta=1")
    assert (r / "ckpt.pt").stat().st_mtime_ns == mtime
    # --force retrains
    _run(tmp_path, mnist_root, cache_dir, "--force")
    assert (r / "ckpt.pt").stat().st_mtime_ns != mtime


def _read_csv(path):
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def test_resume_after_interruption_gives_the_same_samples(tmp_path, mnist_root, cache_dir, monkeypatch):
    argv = ("--stage", "u", "--epochs", "2")
    _run(tmp_path / "a", mnist_root, cache_dir, *argv)
    real_train = ddpm.train_epoch

    def crash_in_epoch_2(net, ema, opt, x, epoch, args, gen):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_train(net, ema, opt, x, epoch, args, gen)

    monkeypatch.setattr(ddpm, "train_epoch", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", mnist_root, cache_dir, *argv)
    monkeypatch.setattr(ddpm, "train_epoch", real_train)
    cell = os.path.join("runs", "ddpm", "colour-balanced-seed0")
    assert torch.load(tmp_path / "b" / cell / "ckpt.pt", weights_only=False)["epoch"] == 1
    _run(tmp_path / "b", mnist_root, cache_dir, *argv)
    with np.load(tmp_path / "a" / cell / "samples.npz") as a, np.load(tmp_path / "b" / cell / "samples.npz") as b:
        assert np.array_equal(a["x"], b["x"])
    ha, hb = _read_csv(tmp_path / "a" / cell / "history.csv"), _read_csv(tmp_path / "b" / cell / "history.csv")
    assert ha == hb and len(ha) == 2


# --------------------------------------------------------------------------- bad input, import
@pytest.mark.parametrize("argv, words", [
    (["--width", "12"], "--width"),
    (["--sample-steps", "1001"], "--sample-steps"),
    (["--eta", "2"], "--eta"),
    (["--ema-decay", "1"], "--ema-decay"),
    (["--dataset", "svhn"], "svhn"),
    (["--rare", "10"], "--rare"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        ddpm.main(argv + ["--runs", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and words in err and len(err.splitlines()) == 1
    assert not os.listdir(tmp_path)


def test_bad_input_from_the_command_line(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(REPO, "ddpm.py"), "--sample-steps", "-1", "--runs", str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "--sample-steps" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not os.listdir(tmp_path)


def test_import_has_no_side_effects(tmp_path):
    code = "import sys; sys.argv = ['ddpm.py', '--bogus']; import ddpm; print('ok')"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert p.returncode == 0 and p.stdout == "ok\n" and not os.listdir(tmp_path)
