"""vae.py: the VAE of Kingma & Welling (2014) on the rare-generative-factor protocol.

Section 4 of "Do Generative Models Learn Rare Generative Factors?": one convolutional VAE trained on the
balanced dataset D_u and one on the skewed D_r of a factor; M samples from each, labelled by the oracles
(section 5.2), give the z-scores of eq. 1 per class (the VAE column of Tables 1-4). Each trained model is
sampled twice (`--prior each`): z ~ N(0, I), the paper's VAE, and "VAE-mix", z from a mixture fitted to
the encoded training set (Ghosh et al. 2020), which favours M (docs/models.md says why).

    python vae.py --factor colour --rare 1            # the full protocol: 30 epochs per model
    python vae.py --factor colour --rare 1 --quick    # the CPU preset (7 epochs)
    python vae.py --factor thick --rare 2 --beta 4    # beta-VAE (Higgins et al. 2017; section 7), runs/vae-b4/
    python vae.py --dataset cars --rare 0             # CompCars 64x64, rare class = Volkswagen
It writes runs/vae/<factor>-balanced-seed<s>/ (D_u) and runs/vae/<factor>-rare<k>-seed<s>/ (D_r, with
result.json: the z-table), the models and their N(0, I) samples, and the mixture's in runs/vae-mix/.

Choices (the paper's appendix with the architectures is missing): a conv encoder and decoder, a 20-d
latent, a Bernoulli likelihood per pixel and colour channel, Adam; why, and the presets: docs/models.md.
"""
import argparse
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import data   # data.*: data.py's own, plus Checkpoint, autocast... (study/runs.py), fit_gmm... (study/mixture.py)
import ztest

# --------------------------------------------------------------------------- configuration
EPOCHS, BATCH_SIZE, LR = 30, 128, 1e-3   # Adam (Kingma & Ba 2015)
LATENT, WIDTH = 20, 32
COMPONENTS = 100                         # --prior gmm: mixture components

# Presets fill only the options the user did not set (data.parse_args); docs/models.md says why these.
PRESETS = {"quick": {"epochs": 7, "samples": 10000},
           "smoke": {"epochs": 1, "width": 4, "latent": 4, "batch_size": 64, "components": 4}}
SAMPLING = ("prior", "components")      # change the samples, not the trained model


def build_parser():
    parser = data.common_parser(__doc__, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR)
    a = parser.add_argument
    a("--beta", type=float, default=1.0, help="weight of the KL term; 1 = the plain ELBO, > 1 = beta-VAE (default: 1)")
    a("--latent", type=int, default=LATENT, help=f"latent dimensions (default: {LATENT})")
    a("--width", type=int, default=WIDTH, help=f"channels of the first conv; doubles per stage (default: {WIDTH})")
    a("--prior", default="each", choices=("normal", "gmm", "each"), help="z from N(0, I) (the paper's VAE), a "
      "mixture fitted to the encoded training set (VAE-mix, runs/vae-mix/), or each from one model (default: each)")
    a("--components", type=int, default=COMPONENTS, help=f"components of --prior gmm (default: {COMPONENTS})")
    return parser


def check(args):
    """Model-specific validation; data.parse_args prints the message as one line and exits 2."""
    if not (args.beta > 0 and math.isfinite(args.beta)):
        return f"--beta {args.beta:g} out of range; accepted: a finite number > 0 (1 = the plain VAE, > 1 = beta-VAE)"
    for opt in ("latent", "width", "components"):
        if getattr(args, opt) < 1:
            return f"--{opt} {getattr(args, opt)} out of range; accepted: an integer >= 1"
    return None


def names(beta, prior="normal"):
    """Display and run name: VAE / vae for beta = 1, else VAE-b<B> / vae-b<B>; + "-mix" for the mixture prior."""
    name, run = ("VAE", "vae") if beta == 1 else (f"VAE-b{beta:g}", f"vae-b{beta:g}")
    return (name + "-mix", run + "-mix") if prior == "gmm" else (name, run)


# --------------------------------------------------------------------------- model
class VAE(nn.Module):
    """Stride-2 conv encoder to q(z|x) = N(mu, sigma^2); the mirrored decoder gives Bernoulli logits."""

    def __init__(self, shape, latent=LATENT, width=WIDTH):
        super().__init__()
        c, h, w = shape
        if h != w:
            raise ValueError(f"VAE needs square images (got {h}x{w})")
        n, s = 0, h
        while s % 2 == 0 and s > 7:                               # stride-2 stages: 28-14-7, 64-32-16-8-4
            s, n = s // 2, n + 1
        chans = [width * 2 ** min(i, 3) for i in range(n)]
        enc, c_in = [], c
        for c_out in chans:
            enc += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
            c_in = c_out
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self.to_stats = nn.Linear(c_in * s * s, 2 * latent)       # -> (mu, log sigma^2) of q(z|x)
        self.from_z = nn.Linear(latent, c_in * s * s)
        dec = [nn.ReLU(), nn.Unflatten(1, (c_in, s, s))]
        for c_out in reversed([c] + chans[:-1]):
            dec += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
            c_in = c_out
        self.decoder = nn.Sequential(*dec[:-1])                   # last layer: logits, no ReLU
        self.latent = latent

    def decode(self, z):                                          # Bernoulli logits [N, 3, H, W]
        return self.decoder(self.from_z(z))

    def forward(self, x, gen):
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        # reparameterisation trick (Kingma & Welling 2014, section 2.4): z = mu + sigma * eps, eps ~ N(0, I)
        eps = torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar


def build(args, shape, device, gen):
    """The VAE for images of `shape`, its weights from a seed drawn from `gen` (global RNG left alone)."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen, device=gen.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VAE(shape, args.latent, args.width)
    return model.to(device)


# --------------------------------------------------------------------------- loss
def neg_elbo(logits, x, mu, logvar, beta=1.0):
    """Negative ELBO per image, averaged over the batch: reconstruction + beta * KL (Kingma & Welling
    2014, eq. 3, estimated as their eq. 10; beta != 1: Higgins et al. 2017). Returns (loss, rec, kl)."""
    # -log p(x|z) under a Bernoulli per pixel and channel, summed over the image
    rec = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="sum") / x.shape[0]
    # KL(q(z|x) || N(0, I)) = -1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)   (K&W, Appendix B)
    kl = -0.5 * torch.sum(1 + logvar.float() - mu.float() ** 2 - logvar.float().exp()) / x.shape[0]
    return rec + beta * kl, rec, kl


# --------------------------------------------------------------------------- training
def train_epoch(model, opt, scaler, x, epoch, args, gen):
    """One pass over x in shuffled batches of --batch-size. Returns the epoch's mean loss, rec and kl per
    image; a NaN or inf ends the pass early, and the means are then non-finite."""
    model.train()
    batches = torch.randperm(x.shape[0], generator=gen, device=x.device).split(args.batch_size)
    sums = torch.zeros(3, device=x.device)          # loss, rec, kl summed over images, kept on the device
    bar = data.progress(batches, desc=f"epoch {epoch + 1}")
    for i, idx in enumerate(bar):
        xb = x[idx]
        with data.autocast(xb.device):
            logits, mu, logvar = model(xb, gen)
        loss, rec, kl = neg_elbo(logits, xb, mu, logvar, args.beta)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sums += torch.stack([loss, rec, kl]).detach() * len(idx)
        if i % 25 == 0 or i == len(batches) - 1:   # a host sync, so only every few steps
            if not torch.isfinite(sums).all():     # a NaN anywhere in the epoch stays in the sums
                break
            bar.set_postfix(nelbo=f"{loss.item():.1f}", rec=f"{rec.item():.1f}", kl=f"{kl.item():.1f}")
    return dict(zip(("loss", "rec", "kl"), (sums / x.shape[0]).tolist()))


def train(which, args, dirs, device, started):
    """Section 4 for one dataset: the VAE trained on D_u (which="u") or D_r ("r") in its own folder,
    resumed after the last checkpointed epoch. Returns (model, its training images or None when it was
    trained in an earlier call, history, timings)."""
    ck = data.Checkpoint(dirs[which], args, which, device, started, eval_keys=SAMPLING)
    gen = data.set_seed(args.seed, device)
    model = build(args, data.image_shape(args), device, gen)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=True)   # fused: one kernel per update
    scaler = torch.amp.GradScaler(device.type, enabled=data.amp_dtype(device) == torch.float16)  # fp16 only
    parts = {"vae": model, "opt": opt, "scaler": scaler}
    ck.restore(parts, gen)
    timings, t0, x = {}, time.time(), None
    if ck.epoch < args.epochs:
        x, x_val = (data.load_split(args, s, device)[0] for s in (which, "val"))   # val: the validation ELBO
        ck.begin(len(x))
        timings["data"], t0 = time.time() - t0, time.time()
        for epoch in range(ck.epoch, args.epochs):
            t_epoch = time.time()
            losses = train_epoch(model, opt, scaler, x, epoch, args, gen)
            ck.save(parts, gen, {"epoch": epoch + 1, **losses, **validate(model, x_val, args.beta),
                                 "seconds": time.time() - t_epoch})
        timings["train"] = time.time() - t0
    return model, x, ck.history, timings


def draw(model, x, which, args, folder, device, reuse=True):
    """M samples of the trained model under args.prior into `folder` (samples.npz, keyed by the settings;
    with reuse, those of an earlier call with the same settings). Returns (samples, seconds)."""
    if reuse and (got := data.cached_samples(folder, args, which, SAMPLING)) is not None:
        return got, 0.0
    t0, gen_sample, prior = time.time(), data.sampling_generator(args.seed, device), None
    if args.prior == "gmm":            # the training set again, when the training ran in an earlier call
        x = data.load_split(args, which, device)[0] if x is None else x
        prior = data.fit_gmm(encode(model, x), args.components, gen_sample)   # EM: study/mixture.py
    return data.save_samples(folder, sample(model, args.samples, gen_sample, prior), args, which, SAMPLING), \
        time.time() - t0


# --------------------------------------------------------------------------- sampling
@torch.inference_mode()
def encode(model, x):
    """The posterior means mu(x) of the images x, [N, latent] in float64 (for data.fit_gmm)."""
    model.eval()
    return torch.cat([model.to_stats(model.encoder(b)).chunk(2, dim=1)[0] for b in x.split(1000)]).double()


@torch.inference_mode()
def sample(model, n, gen, prior=None):
    """z -> decoder -> uint8 [n, 3, H, W]; the Bernoulli mean is the image, as in K&W's figures. z ~ N(0, I),
    or from the mixture `prior` (data.fit_gmm, drawn by data.sample_gmm)."""
    model.eval()
    out = []
    for m in range(0, n, 500):
        b = min(500, n - m)
        z = torch.randn(b, model.latent, generator=gen, device=gen.device) if prior is None else \
            data.sample_gmm(prior, b, gen)
        p = torch.sigmoid(model.decode(z).float())
        out.append((p * 255).round().to(torch.uint8).cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def validate(model, x_val, beta):
    """Negative ELBO per image on the held-out validation images, to watch for overfitting."""
    model.eval()
    gen = torch.Generator(device=x_val.device).manual_seed(0)   # repeatable; the training RNG untouched
    tot = {"val_loss": 0.0, "val_rec": 0.0, "val_kl": 0.0}
    for xb in x_val.split(1000):
        logits, mu, logvar = model(xb, gen)
        for k, v in zip(tot, neg_elbo(logits, xb, mu, logvar, beta)):
            tot[k] += v.item() * len(xb)
    return {k: v / len(x_val) for k, v in tot.items()}


# --------------------------------------------------------------------------- main
def main(argv=None):
    args = data.parse_args(build_parser(), argv, presets=PRESETS, check=check)
    device, started = data.pick_device(args.device), time.time()
    model_dirs = data.run_dirs(args, names(args.beta)[1])      # the trained models: runs/vae/<cell>/
    priors = ("gmm", "normal") if args.prior == "each" else (args.prior,)     # the mixture first
    cells = [(argparse.Namespace(**{**vars(args), "prior": p}), *names(args.beta, p)) for p in priors]
    done = {a.prior: ztest.finished_result(data.run_dirs(a, run), a, SAMPLING) for a, _, run in cells}
    todo = [(a, name, run, data.run_dirs(a, run), {}) for a, name, run in cells if done[a.prior] is None]
    for which in data.stages(args) if todo else ():    # D_u, then D_r; D_u is shared by every rare class
        with data.file_lock(os.path.join(model_dirs[which], ".lock")):
            model, x, history, timings = train(which, args, model_dirs, device, started)
            for a, _, _, dirs, runs in todo:          # one trained model, sampled under each prior
                samples, seconds = draw(model, x, which, a, dirs[which], device, reuse="train" not in timings)
                runs[which] = (samples, history, {**timings, "sample": seconds})
    for a, name, run_name, dirs, runs in todo:
        done[a.prior] = ztest.evaluate(a, name, run_name, dirs, runs, device, eval_keys=SAMPLING)
    return done.get("normal", done.get("gmm"))      # the paper's VAE, unless --prior gmm


if __name__ == "__main__":
    main()
