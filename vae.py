"""vae.py: the standard VAE of Kingma & Welling (2014) in the rare-generative-factor protocol.

What it does. Trains a convolutional VAE on the balanced dataset D_u and on the skewed dataset D_r of one
generative factor (section 4 of "Do Generative Models Learn Rare Generative Factors?"), samples M images
from each, lets the oracle classifiers (section 5.2) label digit and factor, and prints the z-scores of
eq. 1 per class (the VAE column of Tables 1-4). The paper's conclusion (section 7) names a large beta as
a mitigation to try for VAEs: `--beta B` multiplies the KL term (beta-VAE, Higgins et al. 2017); the run
is then named VAE-b<B> and saved under runs/vae-b<B>/ so it never overwrites the beta = 1 run.

Run it:
    python vae.py --factor colour --rare 1            # full protocol: 30 epochs per model
    python vae.py --factor colour --rare 1 --quick    # the CPU preset (measured times: BENCHMARKS.md)
    python vae.py --factor thick --rare 2 --beta 4    # beta-VAE mitigation
    python vae.py --dataset cars --rare 0             # CompCars 64x64, rare class = Volkswagen
Outputs: runs/vae/<factor>-balanced-seed<s>/ (D_u model) and runs/vae/<factor>-rare<k>-seed<s>/ (D_r
model, result.json with the z-table, sample grids).

Choices (the paper's Appendix A with its architectures and training details is not available):
- Architecture: a DCGAN-style convolutional encoder/decoder, the usual convolutional form of the VAE.
  Stride-2 4x4 convolutions halve the image until it is 7x7 (28x28 MNIST: 2 stages) or 4x4 (64x64 cars:
  4 stages); channels width, 2*width, 4*width, 8*width. A linear layer gives the mean and the
  log-variance of q(z|x); the decoder mirrors the encoder with transposed convolutions and outputs one
  logit per pixel AND per RGB channel, so colour is modelled per channel and never averaged to grey.
  No batch norm: the encoder of a VAE should map each image on its own (a batch statistic would leak the
  other images of the batch into q(z|x)), and the small networks train well without it.
- Latent size 20: a digit needs roughly ten dimensions of shape and style plus one for the colour; 20
  is the size Kingma & Welling and the classic pytorch/examples VAE use on MNIST. With more, the KL term
  switches the spare dimensions off anyway; with fewer, the decoder blurs style into the mean digit.
- Likelihood: Bernoulli, i.e. binary cross-entropy on logits, per pixel and channel, as in Kingma &
  Welling's MNIST experiments and the classic examples. MNIST pixels sit near 0 or 1, which a Bernoulli
  models well and which gives sharp strokes; a Gaussian with a fixed variance would be an MSE whose
  arbitrary weight acts as a hidden beta, so "beta = 1" would no longer mean the plain ELBO. (BCE on
  non-binary targets is not a normalised density, see the continuous Bernoulli of Loaiza-Ganem &
  Cunningham 2019; this only shifts the ELBO by a constant per image and does not change the optimum.)
- Training: Adam, lr 1e-3, batch 128, 30 epochs (13,600 steps on the 58,000 digits). Colour is learned
  early, long before the strokes are sharp; the label oracle's confidence in the samples keeps rising
  with every epoch (BENCHMARKS.md, "Sample quality"), so --quick spends its budget on 7 epochs. A wider
  decoder (--width 64) or a smaller latent (8) read no better per epoch, and the wider one costs 2.7x.
"""
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import data
import ztest

# --------------------------------------------------------------------------- configuration
EPOCHS, BATCH_SIZE, LR = 30, 128, 1e-3   # Adam (Kingma & Ba 2015); chosen here, see the docstring
LATENT, WIDTH = 20, 32

# Presets fill only the options the user did not set (data.parse_args). --quick: the documented CPU
# preset: all digits, 7 epochs (3,178 steps); readability rises with every epoch, and the quick budget
# (10 minutes from cold, the oracles' training included) just about allows that many: at the limit on a
# slow host (measured times in BENCHMARKS.md). All digits rather than a --subset, because data.py caches
# the morphological renderings of the full split: a subset would render its digits again. M = 10,000
# samples, so that the readable reading (ztest) keeps about 100 confident samples of every class.
# --smoke: seconds, for the tests (plus data.BASE_PRESETS: 300 digits, 100 samples).
PRESETS = {
    "quick": {"epochs": 7, "samples": 10000},
    "smoke": {"epochs": 1, "width": 4, "latent": 4, "batch_size": 64},
}


def build_parser():
    parser = data.common_parser(__doc__, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR)
    parser.add_argument("--beta", type=float, default=1.0,
                        help="weight of the KL term; 1 = the plain ELBO, > 1 = beta-VAE (default: 1)")
    parser.add_argument("--latent", type=int, default=LATENT,
                        help=f"latent dimensions (default: {LATENT})")
    parser.add_argument("--width", type=int, default=WIDTH,
                        help=f"channels of the first convolution; doubles per stage (default: {WIDTH})")
    return parser


def check(args):
    """Model-specific validation; data.parse_args prints the message as one line and exits 2."""
    if not (args.beta > 0 and math.isfinite(args.beta)):
        return f"--beta {args.beta:g} out of range; accepted: a finite number > 0 (1 = the plain VAE, > 1 = beta-VAE)"
    if args.latent < 1:
        return f"--latent {args.latent} out of range; accepted: an integer >= 1"
    if args.width < 1:
        return f"--width {args.width} out of range; accepted: an integer >= 1"
    return None


def names(beta):
    """Display name and run name: VAE / vae for beta = 1, VAE-b<B> / vae-b<B> otherwise."""
    return ("VAE", "vae") if beta == 1 else (f"VAE-b{beta:g}", f"vae-b{beta:g}")


# --------------------------------------------------------------------------- data
# D_u, D_r and the validation images come from data.load_split as float tensors in [0, 1] on the device,
# [N, 3, 28, 28] for MNIST and [N, 3, 64, 64] for cars; the model only needs their shape.


# --------------------------------------------------------------------------- model
def stages(size):
    """Number of stride-2 stages: halve while even and above 7 (28 -> 14 -> 7, 64 -> ... -> 4)."""
    n = 0
    while size % 2 == 0 and size > 7:
        size, n = size // 2, n + 1
    return n, size


class VAE(nn.Module):
    def __init__(self, shape, latent=LATENT, width=WIDTH):
        super().__init__()
        c, h, w = shape
        if h != w:
            raise ValueError(f"VAE needs square images (got {h}x{w})")
        n, s = stages(h)
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

    def encode(self, x):
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z):
        """Bernoulli logits [N, 3, H, W]: one per pixel and colour channel."""
        return self.decoder(self.from_z(z))

    def forward(self, x, gen):
        mu, logvar = self.encode(x)
        # reparameterisation trick (Kingma & Welling 2014, section 2.4): z = mu + sigma * eps, eps ~ N(0, I)
        eps = torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar


def build(args, shape, device, gen):
    """The VAE for images of `shape`; its weights come from a seed drawn from `gen`, in a forked RNG so
    that the global torch state is left alone."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen, device=gen.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VAE(shape, args.latent, args.width)
    return model.to(device)


def optimizer(model, args):
    """Adam at --lr. fused=True does the update in one kernel instead of a dozen per parameter: the same
    algorithm, about 1.2x the steps per second on a 2-core CPU (BENCHMARKS.md)."""
    return torch.optim.Adam(model.parameters(), lr=args.lr, fused=True)


# --------------------------------------------------------------------------- loss
def neg_elbo(logits, x, mu, logvar, beta=1.0):
    """Negative ELBO per image, averaged over the batch: reconstruction + beta * KL. The ELBO is eq. 3 of
    Kingma & Welling 2014, estimated as in their eq. 10 (analytic KL, one z per image); beta != 1 is the
    beta-VAE of Higgins et al. 2017. Returns (loss, rec, kl)."""
    # -log p(x|z) under a Bernoulli per pixel and channel, summed over the image
    rec = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="sum") / x.shape[0]
    # KL(q(z|x) || N(0, I)) = -1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)   (K&W, Appendix B)
    kl = -0.5 * torch.sum(1 + logvar.float() - mu.float() ** 2 - logvar.float().exp()) / x.shape[0]
    return rec + beta * kl, rec, kl


# --------------------------------------------------------------------------- training
def train_epoch(model, opt, scaler, x, epoch, args, gen):
    """One pass over the resident x in shuffled batches of --batch-size (the last one may be smaller:
    nothing here depends on batch statistics). Returns the epoch's mean loss, rec and kl per image. A NaN
    or inf ends the pass early; the returned means are then non-finite, for data.stop_if_not_finite."""
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
    resumed after the last checkpointed epoch, then M samples. Returns (samples, history, timings)."""
    cell = dirs[which]
    label = "D_u" if which == "u" else f"D_r (rare {args.rare})"
    ck = data.open_checkpoint(cell, args, which, started)
    done = ck is not None and ck["epoch"] >= args.epochs
    if done and (cached := data.cached_samples(cell, args, which)) is not None:
        print(f"{label}: trained model and samples found in {cell}")
        return cached, ck["history"], {}
    gen = data.set_seed(args.seed, device)
    model = build(args, data.image_shape(args), device, gen)
    opt = optimizer(model, args)
    # AMP is GPU-only (data.autocast); fp16 (GPUs without bf16) needs loss scaling, bf16 and fp32 do not
    scaler = torch.amp.GradScaler(device.type, enabled=data.amp_dtype(device) == torch.float16)
    parts = {"vae": model, "opt": opt, "scaler": scaler}
    start, history, _ = data.restore(ck, parts, gen, label)
    timings = {}
    if not done:
        t0 = time.time()
        x = data.load_split(args, which, device)[0]
        x_val = data.load_split(args, "val", device)[0]          # for the validation ELBO
        print(f"{label}: {len(x)} images, epochs {start + 1}..{args.epochs} -> {cell}")
        data.save_config(cell, which, len(x), device, args)
        t1 = time.time()
        for epoch in range(start, args.epochs):
            t_epoch = time.time()
            losses = train_epoch(model, opt, scaler, x, epoch, args, gen)
            data.stop_if_not_finite(losses, label, epoch, cell)
            history.append({"epoch": epoch + 1, **losses, **validate(model, x_val, args.beta),
                            "seconds": time.time() - t_epoch})
            data.save_checkpoint(cell, parts, gen, epoch + 1, args, which, history)
            data.log_epoch(label, history, args, device, first=epoch == start)
        timings.update(data=t1 - t0, train=time.time() - t1)
    t0 = time.time()
    x_gen = sample(model, args.samples, data.sampling_generator(args.seed, device))
    samples = data.save_samples(cell, x_gen, args, which)
    timings["sample"] = time.time() - t0
    return samples, history, timings


# --------------------------------------------------------------------------- sampling
@torch.inference_mode()
def sample(model, n, gen):
    """z ~ N(0, I) -> decoder -> Bernoulli mean per pixel and channel -> uint8 [n, 3, H, W]. The mean
    (not a Bernoulli draw) is the image, as in Kingma & Welling's figures; the channels stay separate."""
    model.eval()
    out = []
    for m in range(0, n, 500):
        z = torch.randn(min(500, n - m), model.latent, generator=gen, device=gen.device)
        p = torch.sigmoid(model.decode(z).float())
        out.append((p * 255).round().to(torch.uint8).cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def validate(model, x_val, beta):
    """Negative ELBO on the held-out balanced validation images, to watch for overfitting: {"val_loss",
    "val_rec", "val_kl"} per image. A fixed local generator makes it repeatable without touching the
    training RNG."""
    model.eval()
    gen = torch.Generator(device=x_val.device).manual_seed(0)
    tot = {"val_loss": 0.0, "val_rec": 0.0, "val_kl": 0.0}
    for xb in x_val.split(1000):
        logits, mu, logvar = model(xb, gen)
        for k, v in zip(tot, neg_elbo(logits, xb, mu, logvar, beta)):
            tot[k] += v.item() * len(xb)
    return {k: v / len(x_val) for k, v in tot.items()}


# --------------------------------------------------------------------------- main
def main(argv=None):
    args = data.parse_args(build_parser(), argv, presets=PRESETS, check=check)
    name, run_name = names(args.beta)
    started = time.time()
    device = data.pick_device(args.device)
    dirs = data.run_dirs(args, run_name)
    done = ztest.finished_result(dirs, args)
    if done is not None:
        return done
    runs = {}
    for which in data.stages(args):     # D_u, then D_r; the lock: D_u is shared by every rare class
        with data.file_lock(os.path.join(dirs[which], ".lock")):
            runs[which] = train(which, args, dirs, device, started)
    return ztest.evaluate(args, name, run_name, dirs, runs, device)


if __name__ == "__main__":
    main()
