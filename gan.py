"""gan.py: a GAN (Goodfellow et al. 2014) and GAN-SD on the rare-generative-factor protocol.

Sections 4, 6.2 and 6.3 of "Do Generative Models Learn Rare Generative Factors?": the same GAN trained on
the balanced dataset D_u and on the skewed D_r (the rare factor only in digit k); M samples from each,
labelled by the oracles, give the z-table of eq. 1 (Tables 1-2). `--sd-lambda L > 0` is the paper's
GAN-SD: spectral decoupling (Pezeshki et al. 2021) on D in the first `--sd-epochs`. Each epoch records
D's loss w.r.t. the "real" label on the validation digits, per class and factor value (Figure 3).

    python gan.py --factor colour --rare 1                    # plain GAN, 200 epochs (a GPU job)
    python gan.py --factor colour --rare 1 --sd-lambda 0.8    # GAN-SD as in the paper
    python gan.py --factor colour --rare 1 --quick            # the CPU preset

The paper's: the non-saturating game, one D step then one G step, Adam (lr 2e-4, betas 0.5, 0.999),
batch 64, 200 epochs, a 100-d Gaussian latent, SD in the first 40% of the epochs. Ours, as its appendix
with the architectures is missing: a DCGAN-style conv pair, spectral norm and packing (PacGAN2) in D,
and samples from an EMA of G with standing BatchNorm statistics. Why, and the presets: docs/models.md.
"""
import argparse
import csv
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import data   # data.*: data.py's own, plus Checkpoint, EMA, autocast, progress... re-exported from study/runs.py
import ztest

# --------------------------------------------------------------------------- configuration
EPOCHS, BATCH_SIZE, LR, BETAS = 200, 64, 2e-4, (0.5, 0.999)   # the paper's GAN settings (Adam)
LATENT, WIDTH = 100, 32        # a 100-d Gaussian latent; channels of D's first and G's last conv, x2 per stage
SD_LAMBDA, SD_SHARE = 0.8, 0.4  # section 6.3: lambda 0.8 for the first 80 of 200 epochs
EMA_DECAY, PACK = 0.999, 2      # samples from an EMA of G (Yazici et al. 2019); D judges packs of 2 (PacGAN2)
# Presets fill only the options the user did not set (data.parse_args); docs/models.md says why these.
PRESETS = {"quick": {"epochs": 10, "samples": 10000}, "cpu_full": {"epochs": 45, "lr": 4e-4},  # fits D_r
           "smoke": {"epochs": 1, "width": 8, "samples": 64}}


def build_parser():
    parser = data.common_parser(__doc__, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR)
    a, on_off = parser.add_argument, argparse.BooleanOptionalAction
    a("--sd-lambda", type=float, default=0.0, help=f"SD strength; 0 = plain GAN, {SD_LAMBDA:g} = GAN-SD (default: 0)")
    a("--sd-epochs", type=int, default=None, help="SD in the first N epochs (default: 40%% of --epochs, >= 1)")
    a("--width", type=int, default=WIDTH, help=f"channels of D's first conv and G's last (default: {WIDTH})")
    a("--pack", type=int, default=PACK, help=f"images per pack that D judges (PacGAN); 1 = none (default: {PACK})")
    a("--spectral-norm", default=True, action=on_off, help="spectral normalisation of every D layer (default: on)")
    a("--ema-decay", type=float, default=EMA_DECAY, help=f"EMA of G to sample; 0 = G itself (default: {EMA_DECAY:g})")
    a("--cpu-bf16", default=True, action=on_off, help="bf16 autocast on CPUs that support it (default: on)")
    return parser


def check(args):
    """Model-specific validation (data.parse_args: one line, exit 2); --sd-epochs follows --epochs."""
    args.sd_epochs = max(1, round(SD_SHARE * args.epochs)) if args.sd_epochs is None else args.sd_epochs
    bad = [(not 0 <= args.sd_lambda < float("inf"),                  # (also rejects nan)
            f"--sd-lambda must be a finite number >= 0 (got {args.sd_lambda:g}); 0 = plain GAN"),
           (not 0 <= args.sd_epochs <= args.epochs,
            f"--sd-epochs must lie in 0..--epochs ({args.epochs}) (got {args.sd_epochs})"),
           (not 0 <= args.ema_decay < 1, f"--ema-decay must be in [0, 1) (got {args.ema_decay:g}); 0 = no EMA"),
           (args.width < 1, f"--width must be >= 1 (got {args.width})"),
           (args.pack < 1 or args.batch_size % args.pack,
            f"--pack must be >= 1 and divide --batch-size {args.batch_size} (got {args.pack})")]
    return next((msg for is_bad, msg in bad if is_bad), None)


def names(sd_lambda):
    """Display and run name: GAN / gan, GAN-SD / gan-sd at the paper's 0.8, gan-sd<L> for another lambda."""
    return ("GAN", "gan") if sd_lambda == 0 else ("GAN-SD", "gan-sd" if sd_lambda == SD_LAMBDA
                                                  else f"gan-sd{sd_lambda:g}")


# --------------------------------------------------------------------------- model
class Generator(nn.Module):
    """z [B, 100] -> [B, C, H, W] in [-1, 1]: linear to a 7x7 map, transposed convs (DCGAN), a conv to RGB."""

    def __init__(self, shape, width=WIDTH):
        super().__init__()
        c, h, _ = shape
        n = 2 if h <= 32 else 3                                         # stride-2 stages: 28-14-7, 64-32-16-8
        chans, s = [width * 2 ** (n - i) for i in range(n + 1)], h // 2 ** n   # 28x28: 4w, 2w, w; 7x7
        layers = [nn.Linear(LATENT, chans[0] * s * s, bias=False), nn.Unflatten(1, (chans[0], s, s)),
                  nn.BatchNorm2d(chans[0]), nn.ReLU()]
        for c_in, c_out in zip(chans, chans[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(chans[-1], c, 3, 1, 1), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    """[B, C, H, W] -> a logit per pack of images stacked on the channels: stride-2 convs, a linear layer."""

    def __init__(self, shape, width=WIDTH, spectral_norm=True, pack=PACK):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        c, h, _ = shape
        self.pack, n = pack, 2 if h <= 32 else 3
        chans, layers = [width * 2 ** i for i in range(n + 1)], []      # w, 2w, 4w on 28x28
        for i, (c_in, c_out) in enumerate(zip([c * pack] + chans, chans)):   # 28 -> 14 -> 7 -> 4
            layers += [sn(nn.Conv2d(c_in, c_out, 4 if i < n else 3, 2, 1)), nn.LeakyReLU(0.2)]
        s = (h // 2 ** n + 1) // 2
        self.net = nn.Sequential(*layers, nn.Flatten(), sn(nn.Linear(width * 2 ** n * s * s, 1)))

    def forward(self, x):
        B, C, H, W = x.shape
        return self.net(x.reshape(B // self.pack, self.pack * C, H, W)).squeeze(1)


def build(args, shape, device, gen):
    """G and D for images of `shape`, their weights from a seed drawn from `gen` (global RNG left alone)."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen, device=gen.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G, D = Generator(shape, args.width), Discriminator(shape, args.width, args.spectral_norm, args.pack)
    return G.to(device), D.to(device)


# --------------------------------------------------------------------------- loss
def d_loss(D, real, fake, sd_lambda=0.0):
    """L_D = BCE(D(x), 1) + BCE(D(G(z)), 0) [+ lambda/2 * mean(D(x)^2): SD, section 6.3, real logits only]."""
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


def sd_active(epoch, args):
    """SD during the first --sd-epochs epochs (`epoch` counts from 0), then plain GAN training."""
    return args.sd_lambda > 0 and epoch < args.sd_epochs


# --------------------------------------------------------------------------- training
def train_epoch(G, D, opt_g, opt_d, scaler, x, epoch, args, gen, ema=None):
    """One pass over x: per batch a D step, a G step (Algorithm 1, k = 1), the EMA. Returns mean losses."""
    G.train(), D.train()
    lam = args.sd_lambda if sd_active(epoch, args) else 0.0
    batches = torch.randperm(x.shape[0], generator=gen, device=x.device).split(args.batch_size)
    if len(batches) > 1 and len(batches[-1]) < args.batch_size:
        batches = batches[:-1]   # a ragged last batch would skew BatchNorm's statistics
    batches = [b[:len(b) - len(b) % args.pack] for b in batches]   # whole packs (only a lone batch can be ragged)
    sums = torch.zeros(2, device=x.device)
    bar = data.progress(batches, desc=f"epoch {epoch + 1}/{args.epochs}" + (" (SD)" if lam else ""))
    for i, idx in enumerate(bar):
        real = x[idx] * 2 - 1                                   # data in [0, 1] -> [-1, 1], G's tanh
        z = torch.randn(len(idx), LATENT, generator=gen, device=x.device)
        with data.autocast(x.device, args.cpu_bf16):             # (1) D: maximise log D(x) + log(1 - D(G(z)))
            fake = G(z)
            loss_d = d_loss(D, real, fake.detach(), lam)
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)
        with data.autocast(x.device, args.cpu_bf16):             # (2) G: maximise log D(G(z)), the new D
            loss_g = g_loss(D, fake)
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
    """Section 4 for one dataset: the GAN trained on D_u (which="u") or D_r ("r"), then M samples."""
    ck = data.Checkpoint(dirs[which], args, which, device, started)
    if (samples := ck.finished_samples()) is not None:      # trained, and sampled with these settings
        return samples, ck.history, {}
    gen = data.set_seed(args.seed, device)
    G, D = build(args, data.image_shape(args), device, gen)
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=args.lr, betas=BETAS, fused=True) for m in (G, D))
    scaler = torch.amp.GradScaler(device.type, enabled=data.amp_dtype(device) == torch.float16)  # fp16 only
    ema = data.EMA(G, args.ema_decay) if args.ema_decay > 0 else None
    parts = {"G": G, "D": D, "opt_g": opt_g, "opt_d": opt_d, "scaler": scaler, **({"G_ema": ema} if ema else {})}
    ck.restore(parts, gen)
    timings, t0, dloss = {}, time.time(), ck.extra or []    # dloss: Figure 3's rows, kept in the checkpoint
    if ck.epoch < args.epochs:
        x, val = data.load_split(args, which, device)[0], data.load_split(args, "val", device)
        ck.begin(len(x))
        timings["data"], t0 = time.time() - t0, time.time()
        for epoch in range(ck.epoch, args.epochs):
            t_epoch = time.time()
            losses = train_epoch(G, D, opt_g, opt_d, scaler, x, epoch, args, gen, ema)
            dloss = [r for r in dloss if r["epoch"] <= epoch] + [   # Figure 3; a redone epoch replaces its rows
                {"epoch": epoch + 1, "class": c, "factor": v, "loss": loss, "sd": int(sd_active(epoch, args))}
                for (c, v), loss in sorted(real_loss_by_group(D, *val).items())]
            ck.save(parts, gen, {"epoch": epoch + 1, **losses, "seconds": time.time() - t_epoch}, extra=dloss)
            data.save_csv(dloss, os.path.join(dirs[which], "disc_loss.csv"))
        timings["train"], t0 = time.time() - t0, time.time()
    gen_s = data.sampling_generator(args.seed, device)
    samples = ck.save_samples(sample(standing_stats(ema.net, gen_s) if ema else G, args.samples, gen_s))
    timings["sample"] = time.time() - t0
    return samples, ck.history, timings


# --------------------------------------------------------------------------- sampling
@torch.no_grad()
def standing_stats(G, gen, n=10_000, batch=1000):
    """G's BatchNorm statistics from its own activations on n latents (standing stats, Brock et al. 2019)."""
    norms = [(m, m.momentum) for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m, _ in norms:
        m.reset_running_stats()
        m.momentum = None                     # None: a plain average over the batches seen
    G.train()
    for _ in range(n // batch):
        G(torch.randn(batch, LATENT, generator=gen, device=gen.device))
    for m, momentum in norms:
        m.momentum = momentum
    return G.eval()


@torch.inference_mode()
def sample(G, n, gen):
    """n images from G, uint8 [n, C, H, W], in eval mode (BatchNorm then uses its running statistics)."""
    G.eval()
    zs = (torch.randn(min(1000, n - i), LATENT, generator=gen, device=gen.device) for i in range(0, n, 1000))
    return torch.cat([((G(z).float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8) for z in zs])


# --------------------------------------------------------------------------- evaluation (Figure 3)
@torch.no_grad()
def real_loss_by_group(D, x_val, y_val, f_val):
    """{(class, factor): D's mean BCE against "real"} on the validation set (section 6.2), each group packed apart."""
    was_training = D.training
    D.eval()
    chunk, out = 1000 // D.pack * D.pack, {}
    for c in torch.unique(y_val).tolist():
        for v in (0, 1):
            idx = torch.nonzero((y_val == c) & (f_val == v)).squeeze(1)
            idx = idx.repeat(D.pack)[:-(-len(idx) // D.pack) * D.pack]    # the last pack filled from the first
            if len(idx):
                logit = torch.cat([D(x_val[idx[i:i + chunk]] * 2 - 1) for i in range(0, len(idx), chunk)]).float()
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
    runs = {}
    for which in data.stages(args):     # D_u, then D_r; the lock: D_u is shared by every rare class
        with data.file_lock(os.path.join(dirs[which], ".lock")):
            runs[which] = train(which, args, dirs, device, started)
    res = ztest.evaluate(args, name, run_name, dirs, runs, device)   # the oracles and eq. 1
    if res is not None:   # Figure 3: D's real-label loss on the rare class, with and without the factor
        res.update(disc_loss={w: disc_loss_of(dirs[w], args.rare) for w in "ur"},
                   sd_epochs=args.sd_epochs if args.sd_lambda > 0 else 0)
        data.save_json(res, os.path.join(dirs["r"], "result.json"))
        ztest.plot_disc_loss(res, os.path.join(dirs["r"], "disc_loss.png"))
    return res


if __name__ == "__main__":
    main()
