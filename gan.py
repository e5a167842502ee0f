"""Plain GAN, with optional spectral decoupling, on the rare-generative-factor protocol.

What it does (paper sections 4, 6.2, 6.3): trains the same GAN on the balanced dataset D_u and on the
skewed dataset D_r (the rare factor only in digit k), samples M images from each, classifies them with
the oracles and prints the z-table of eq. 1 (Tables 1-2). With `--sd-lambda L > 0` it is the paper's
GAN-SD: spectral decoupling (Pezeshki et al. 2021) on the discriminator for the first `--sd-epochs`.
After every epoch it also records the discriminator's loss w.r.t. the "real" label on the held-out
balanced validation set, per class and factor value (Figure 3; result.json keeps the rare class's).

Run it:
    python gan.py --factor colour --rare 1                    # plain GAN, 200 epochs (a GPU job)
    python gan.py --factor colour --rare 1 --sd-lambda 0.8    # GAN-SD as in the paper
    python gan.py --factor colour --rare 1 --quick            # the CPU preset (below, BENCHMARKS.md)
    python gan.py --dataset cars --sd-lambda 0.8              # CompCars subset at 64x64
Outputs: runs/gan[-sd]/<factor>-balanced-seed<s>/ (D_u model), runs/gan[-sd]/<factor>-rare<k>-seed<s>/
(D_r model, result.json, samples.png, disc_loss.csv and disc_loss.png = Figure 3).

What is the paper's: Goodfellow et al.'s game with the non-saturating losses, D and G updated
alternately (one step each), Adam with lr 2e-4 and betas (0.5, 0.999), batch 64, 200 epochs, a 100-d
Gaussian latent; GAN-SD adds lambda/2 times the squared logits of the real images in the first 40% of
the epochs. Losses (Goodfellow et al. 2014, Algorithm 1 with k = 1):
    L_D = BCE(D(x), 1) + BCE(D(G(z)), 0) [+ lambda/2 * mean_i D(x_i)^2   while epoch < sd_epochs]
    L_G = BCE(D(G(z)), 1)
SD's normalisation: the paper writes lambda/2 * ||y_hat||^2 (section 6.3); we take the MEAN over the
batch of the squared real logits (as public SD code does), not the sum, so that lambda does not depend
on the batch size.

What we chose (the paper's appendix with the architectures is missing):
- A DCGAN-style conv pair (Radford et al. 2016). G: z -> linear to 4w x 7 x 7, then stride-2
  transposed convs to 2w x 14 x 14 and w x 28 x 28 (BatchNorm + ReLU after each), a 3x3 conv to RGB,
  tanh. D: stride-2 convs w (4x4) -> 2w (4x4) -> 4w (3x3), LeakyReLU(0.2), a linear layer to one
  logit. w = --width, 32. Cars (64x64) get one more stage each way.
- Two standard stabilisers in D, in the plain GAN and the GAN-SD alike, chosen by the curves in
  BENCHMARKS.md ("A quick GAN with a baseline"):
  * spectral normalisation of every D layer (Miyato et al. 2018; `--no-spectral-norm` removes it):
    without it the same pair reached the balanced D_u baseline later;
  * packing (PacGAN2, Lin et al. 2018; `--pack 1` removes it): D judges two images at once, stacked
    on the channels, so a G that never draws a mode makes packs that real data tells apart. Without
    it the conv G trained on D_r dropped the rare class's mode (colour, rare 1: 4 digit-1s per 1,000,
    none green, up to 9,060 steps), so the rare factor could not even be counted.
  An MLP G drew the rare mode but dropped digits on D_u. D still outputs a logit (one per pack), so
  SD's penalty and Figure 3's loss read as the paper's; Figure 3 packs each group's images together.
- Sampling from an exponential moving average of G's weights (--ema-decay; Yazici et al. 2019), its
  BatchNorm statistics re-estimated on 10,000 latents (standing statistics, Brock et al. 2019).
  Averaging smooths the iterates of the game; it changes no training step. `--ema-decay 0` samples the
  trained G itself, as Goodfellow et al. do.
- bf16 autocast on GPUs with bf16 and on CPUs with oneDNN bf16 kernels (`--no-cpu-bf16` turns the
  latter off); fp16 GPUs get fp16 with a loss scaler.

--quick (CPU): 10 epochs of all 58,000 digits (9,060 steps per model, SD if asked in the first 4) and
M = 10,000 samples (enough for the readable reading of ztest); everything else is the paper's. The
curves that chose the length, and its measured time: BENCHMARKS.md ("A quick GAN with a baseline").
"""
import argparse
import csv
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import data
import ztest

# --------------------------------------------------------------------------- configuration
EPOCHS, BATCH_SIZE, LR = 200, 64, 2e-4   # the paper's GAN settings (Adam betas below)
BETAS = (0.5, 0.999)                     # Radford et al. 2016, as the paper's
LATENT = 100                             # a 100-d standard Gaussian latent (Goodfellow et al. 2014)
WIDTH = 32                               # channels of D's first and G's last conv; x2 per stage
SD_LAMBDA, SD_SHARE = 0.8, 0.4           # section 6.3: lambda 0.8 for the first 80 of 200 epochs
EMA_DECAY = 0.999                        # samples from an EMA of G's weights (Yazici et al. 2019)
PACK = 2                                 # D judges packs of 2 images (PacGAN2, Lin et al. 2018)

# Presets fill only the options the user did not set (data.parse_args).
# --quick: the documented CPU preset (its time: BENCHMARKS.md). --smoke: seconds, for the tests (works on
#   the offline fixture).
PRESETS = {
    "quick": {"epochs": 10, "samples": 10000},
    "smoke": {"epochs": 1, "width": 8, "samples": 64},
}


def build_parser():
    parser = data.common_parser(__doc__, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR)
    a = parser.add_argument
    a("--sd-lambda", type=float, default=0.0, help=f"spectral decoupling strength lambda; 0 = plain GAN, "
      f"{SD_LAMBDA:g} = the paper's GAN-SD (default: 0)")
    a("--sd-epochs", type=int, default=None, help="apply SD during the first N epochs only (default: 40%% of "
      "--epochs, at least 1: the paper's 80 of 200)")
    a("--width", type=int, default=WIDTH, help=f"channels of D's first conv and G's last (default: {WIDTH})")
    a("--pack", type=int, default=PACK, help=f"images per pack that D judges together (PacGAN, Lin et al. "
      f"2018); 1 = one image at a time, as Goodfellow et al. (default: {PACK})")
    a("--spectral-norm", default=True, action=argparse.BooleanOptionalAction, help="spectral normalisation "
      "of every D layer (Miyato et al. 2018) (default: on)")
    a("--ema-decay", type=float, default=EMA_DECAY, help=f"decay of the EMA of G's weights that the samples "
      f"come from; 0 = sample the trained G itself (default: {EMA_DECAY:g})")
    a("--cpu-bf16", default=True, action=argparse.BooleanOptionalAction, help="bf16 autocast on CPUs that "
      "support it (measured faster, BENCHMARKS.md); GPUs always use AMP (default: on)")
    return parser


def check(args):
    """Model-specific validation; data.parse_args prints the message as one line and exits 2.
    Also resolves the default --sd-epochs, which follows --epochs (and so the presets)."""
    if args.sd_epochs is None:
        args.sd_epochs = max(1, round(SD_SHARE * args.epochs))
    if not args.sd_lambda >= 0 or math.isinf(args.sd_lambda):   # also rejects nan
        return f"--sd-lambda must be a finite number >= 0 (got {args.sd_lambda:g}); 0 = plain GAN"
    if not 0 <= args.sd_epochs <= args.epochs:
        return f"--sd-epochs must lie in 0..--epochs ({args.epochs}) (got {args.sd_epochs})"
    if not 0 <= args.ema_decay < 1:   # also rejects nan
        return f"--ema-decay must be in [0, 1) (got {args.ema_decay:g}); 0 = no EMA"
    if args.width < 1:
        return f"--width must be >= 1 (got {args.width})"
    if args.pack < 1 or args.batch_size % args.pack:
        return f"--pack must be >= 1 and divide --batch-size {args.batch_size} (got {args.pack})"
    return None


def names(sd_lambda):
    """Display name and run name: GAN / gan, GAN-SD / gan-sd at the paper's 0.8, gan-sd<L> otherwise
    (so a lambda sweep never overwrites the paper's runs)."""
    if sd_lambda == 0:
        return "GAN", "gan"
    return "GAN-SD", "gan-sd" if sd_lambda == SD_LAMBDA else f"gan-sd{sd_lambda:g}"


# --------------------------------------------------------------------------- data
# D_u and D_r come from data.load_split as float tensors in [0, 1] resident on the
# device, [N, 3, 28, 28] for MNIST and [N, 3, 64, 64] for cars. The GAN works in [-1, 1] (G's tanh).
def to_gan(x):
    return x * 2 - 1


# --------------------------------------------------------------------------- model
def stages(size):
    """Stride-2 stages between the image and the smallest map: 28 -> 14 -> 7 (2), 64 -> ... -> 8 (3)."""
    return 2 if size <= 32 else 3


class Generator(nn.Module):
    """z [B, 100] -> image [B, C, H, W] in [-1, 1]: a linear layer to a small map, then transposed convs
    that double its size and halve its channels (DCGAN), then a 3x3 conv to RGB."""

    def __init__(self, shape, width=WIDTH):
        super().__init__()
        c, h, _ = shape
        n = stages(h)
        chans = [width * 2 ** (n - i) for i in range(n + 1)]            # 28x28: 4w, 2w, w
        s = h // 2 ** n
        layers = [nn.Linear(LATENT, chans[0] * s * s, bias=False), nn.Unflatten(1, (chans[0], s, s)),
                  nn.BatchNorm2d(chans[0]), nn.ReLU()]
        for c_in, c_out in zip(chans, chans[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(chans[-1], c, 3, 1, 1), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    """Packs of images [B, C, H, W] in [-1, 1] -> one logit per pack of `pack` images, [B // pack]:
    stride-2 convs w, 2w (4x4), 4w (3x3) over the pack's stacked channels, with LeakyReLU(0.2), then a
    linear layer; every layer spectrally normalised unless asked not to. pack=1 is the usual D."""

    def __init__(self, shape, width=WIDTH, spectral_norm=True, pack=PACK):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        c, h, _ = shape
        self.pack, c = pack, c * pack                                   # a pack: its images' channels stacked
        n = stages(h)
        layers = []
        for i in range(n + 1):
            k = 4 if i < n else 3                                       # 28 -> 14 -> 7 -> 4
            layers += [sn(nn.Conv2d(c if i == 0 else width * 2 ** (i - 1), width * 2 ** i, k, 2, 1)),
                       nn.LeakyReLU(0.2)]
        s = (h // 2 ** n + 1) // 2
        self.net = nn.Sequential(*layers, nn.Flatten(), sn(nn.Linear(width * 2 ** n * s * s, 1)))

    def forward(self, x):
        """x [B, C, H, W] with B a multiple of the pack size -> one logit per pack, [B // pack]: images
        i*pack ... i*pack + pack - 1 form pack i."""
        B, C, H, W = x.shape
        return self.net(x.reshape(B // self.pack, self.pack * C, H, W)).squeeze(1)


def build(args, shape, device, gen):
    """G and D for images of `shape`, their weights drawn from a seed taken from `gen` (in a forked RNG,
    so the global torch state is left alone)."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen, device=gen.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G, D = Generator(shape, args.width), Discriminator(shape, args.width, args.spectral_norm, args.pack)
    return G.to(device), D.to(device)


def optimizers(G, D, args):
    """Adam for G and for D with the paper's lr and betas. fused=True does each update in one kernel
    instead of a dozen per parameter: the same algorithm, faster on a 2-core CPU (BENCHMARKS.md)."""
    return (torch.optim.Adam(m.parameters(), lr=args.lr, betas=BETAS, fused=True) for m in (G, D))


# --------------------------------------------------------------------------- loss
def d_loss(D, real, fake, sd_lambda=0.0):
    """L_D = BCE(D(x), 1) + BCE(D(G(z)), 0) [+ lambda/2 * mean(D(x)^2)]: Goodfellow et al.'s value
    function, negated; the spectral decoupling term (section 6.3) on the real batch's logits only."""
    logit_real, logit_fake = D(real).float(), D(fake).float()
    loss = (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
            + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))
    if sd_lambda > 0:   # paper: lambda/2 * ||y_hat||^2; averaged over the batch, not summed
        loss = loss + sd_lambda / 2 * logit_real.pow(2).mean()
    return loss


def g_loss(D, fake):
    """Non-saturating generator loss, -log D(G(z)) (Goodfellow et al. 2014, section 3)."""
    logit = D(fake).float()
    return F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))


# --------------------------------------------------------------------------- training
def sd_active(epoch, args):
    """SD during the first --sd-epochs epochs (`epoch` counts from 0), then plain GAN training."""
    return args.sd_lambda > 0 and epoch < args.sd_epochs


def train_epoch(G, D, opt_g, opt_d, scaler, x, epoch, args, gen, ema=None):
    """One pass over the resident x in shuffled batches: one D step, then one G step (Algorithm 1 of
    Goodfellow et al. with k = 1), then the EMA of G follows. Returns the epoch's mean losses."""
    G.train(), D.train()
    lam = args.sd_lambda if sd_active(epoch, args) else 0.0
    perm = torch.randperm(x.shape[0], generator=gen, device=x.device)
    batches = perm.split(args.batch_size)
    if len(batches) > 1 and len(batches[-1]) < args.batch_size:
        batches = batches[:-1]   # a ragged last batch would skew BatchNorm's statistics
    batches = [b[:len(b) - len(b) % args.pack] for b in batches]   # whole packs (only a lone batch can be ragged)
    sums = torch.zeros(2, device=x.device)
    bar = data.progress(batches, desc=f"epoch {epoch + 1}/{args.epochs}" + (" (SD)" if lam else ""))
    for i, idx in enumerate(bar):
        real = to_gan(x[idx])
        z = torch.randn(len(idx), LATENT, generator=gen, device=x.device)
        with data.autocast(x.device, args.cpu_bf16):
            fake = G(z)
            loss_d = d_loss(D, real, fake.detach(), lam)
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)
        with data.autocast(x.device, args.cpu_bf16):
            loss_g = g_loss(D, fake)   # against the D just updated
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(loss_g).backward()
        scaler.step(opt_g)
        scaler.update()
        if ema is not None:
            ema.update(G)
        sums += torch.stack([loss_d.detach(), loss_g.detach()])
        if i % 25 == 0:   # .item() waits for the GPU: only now and then
            bar.set_postfix(D=f"{loss_d.item():.3f}", G=f"{loss_g.item():.3f}", refresh=False)
    loss_d, loss_g = (sums / len(batches)).tolist()
    return {"loss_d": loss_d, "loss_g": loss_g, "sd_lambda": lam}


def train(which, args, dirs, device, started):
    """Section 4 for one dataset: train the GAN on D_u (which="u") or D_r ("r") in its folder, resuming
    from the last epoch's checkpoint, then sample M images. Returns (samples, history, timings)."""
    cell, label = dirs[which], "D_u" if which == "u" else f"D_r (rare {args.rare})"
    ck = data.open_checkpoint(cell, args, which, started)
    if ck and ck["epoch"] >= args.epochs and (s := data.cached_samples(cell, args, which)) is not None:
        print(f"{label}: trained model and samples found in {cell}")
        return s, ck["history"], {}
    gen = data.set_seed(args.seed, device)
    G, D = build(args, data.image_shape(args), device, gen)
    opt_g, opt_d = optimizers(G, D, args)
    # AMP: bf16 needs no loss scaling; fp16 (GPUs without bf16) does
    scaler = torch.amp.GradScaler(device.type, enabled=data.amp_dtype(device) == torch.float16)
    ema = data.EMA(G, args.ema_decay) if args.ema_decay > 0 else None
    parts = {"G": G, "D": D, "opt_g": opt_g, "opt_d": opt_d, "scaler": scaler, **({"G_ema": ema} if ema else {})}
    start, history, dloss = data.restore(ck, parts, gen, label)
    timings, dloss = {}, dloss or []          # dloss: the Figure 3 rows, checkpointed with the models
    if start < args.epochs:
        t0 = time.time()
        x, _, _ = data.load_split(args, which, device)
        val = data.load_split(args, "val", device)
        timings["data"] = time.time() - t0
        data.save_config(cell, which, len(x), device, args)
        print(f"{label}: {len(x)} images, epochs {start + 1}..{args.epochs} -> {cell}")
        t0 = time.time()
        for epoch in range(start, args.epochs):
            t_epoch = time.time()
            losses = train_epoch(G, D, opt_g, opt_d, scaler, x, epoch, args, gen, ema)
            data.stop_if_not_finite(losses, label, epoch, cell)
            dloss = [r for r in dloss if r["epoch"] <= epoch]    # a redone epoch replaces its rows
            dloss += [{"epoch": epoch + 1, "class": c, "factor": v, "loss": loss, "sd": int(sd_active(epoch, args))}
                      for (c, v), loss in sorted(real_loss_by_group(D, *val).items())]
            data.save_csv(dloss, os.path.join(cell, "disc_loss.csv"))
            history.append({"epoch": epoch + 1, **losses, "seconds": time.time() - t_epoch})
            data.save_checkpoint(cell, parts, gen, epoch + 1, args, which, history, extra=dloss)
            data.log_epoch(label, history, args, device, first=epoch == start)
        timings["train"] = time.time() - t0
    t0 = time.time()
    gen_s = data.sampling_generator(args.seed, device)
    if ema is not None:
        standing_stats(ema.net, gen_s)
    samples = data.save_samples(cell, sample(ema.net if ema else G, args.samples, gen_s), args, which)
    timings["sample"] = time.time() - t0
    return samples, history, timings


# --------------------------------------------------------------------------- sampling
@torch.no_grad()
def standing_stats(G, gen, n=10_000, batch=1000):
    """Re-estimate G's BatchNorm statistics from its own activations on n latents ("standing
    statistics", Brock et al. 2019): the EMA of G has averaged weights but no statistics of its own, and
    the trained G's running statistics belong to other weights."""
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                     # None: a plain average over the batches seen
    G.train()
    device = next(G.parameters()).device
    for _ in range(n // batch):
        G(torch.randn(batch, LATENT, generator=gen, device=device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    G.eval()


@torch.inference_mode()
def sample(G, n, gen):
    """n images from G, uint8 [n, C, H, W], in eval mode (BatchNorm then uses its running statistics)."""
    G.eval()
    device = next(G.parameters()).device
    out = []
    for i in range(0, n, 1000):
        z = torch.randn(min(1000, n - i), LATENT, generator=gen, device=device)
        out.append(((G(z).float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


# --------------------------------------------------------------------------- evaluation (Figure 3)
@torch.no_grad()
def real_loss_by_group(D, x_val, y_val, f_val):
    """{(class, factor): mean BCE of D's logits against the "real" label} on the validation set
    (section 6.2). A logit of 0 gives log 2, D's decision boundary. D judges packs, so each group's
    images are packed among themselves, in the validation set's order; a group that does not fill its
    last pack fills it with its own first images."""
    was_training = D.training
    D.eval()
    chunk = 1000 // D.pack * D.pack
    out = {}
    for c in torch.unique(y_val).tolist():
        for v in (0, 1):
            idx = torch.nonzero((y_val == c) & (f_val == v)).squeeze(1)
            idx = idx.repeat(D.pack)[:-(-len(idx) // D.pack) * D.pack]    # the last pack filled from the first
            if len(idx):
                logit = torch.cat([D(to_gan(x_val[idx[i:i + chunk]])) for i in range(0, len(idx), chunk)]).float()
                out[(c, v)] = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit)).item()
    D.train(was_training)
    return out


def disc_loss_of(folder, k):
    """The rare class k's rows of a model's disc_loss.csv: [[epoch, factor, loss, sd], ...]."""
    with open(os.path.join(folder, "disc_loss.csv"), newline="") as fh:
        return [[int(r["epoch"]), int(r["factor"]), float(r["loss"]), int(r["sd"])] for r in csv.DictReader(fh)
                if int(r["class"]) == k]


# --------------------------------------------------------------------------- main
def main(argv=None):
    args = data.parse_args(build_parser(), argv, presets=PRESETS, check=check)
    name, run_name = names(args.sd_lambda)
    device, started = data.pick_device(args.device), time.time()
    dirs = data.run_dirs(args, run_name)
    if (res := ztest.finished_result(dirs, args)) is not None:
        return res
    # Section 4: the same GAN trained on D_u and on D_r, M samples from each (the D_u model is shared
    # by every rare class, so a lock keeps parallel cells from training it twice) ...
    runs = {}
    for which in data.stages(args):
        with data.file_lock(os.path.join(dirs[which], ".lock")):
            runs[which] = train(which, args, dirs, device, started)
    # ... then the oracles label the samples and eq. 1 compares the factor's share per class ...
    res = ztest.evaluate(args, name, run_name, dirs, runs, device)
    # ... and Figure 3: D's real-label loss on the rare class, with and without the factor, D_u and D_r.
    if res is not None:
        res["disc_loss"] = {w: disc_loss_of(dirs[w], args.rare) for w in ("u", "r")}
        res["sd_epochs"] = args.sd_epochs if args.sd_lambda > 0 else 0
        data.save_json(res, os.path.join(dirs["r"], "result.json"))
        ztest.plot_disc_loss(res, os.path.join(dirs["r"], "disc_loss.png"))
    return res


if __name__ == "__main__":
    main()
