"""Plain GAN, with optional spectral decoupling, on the rare-generative-factor protocol.

What it does (paper sections 4, 6.2, 6.3): trains the same GAN on the balanced dataset D_u and on the
skewed dataset D_r (the rare factor only in digit k), samples M images from each, classifies them with
the oracles and prints the z-table of eq. 1 (Tables 1-2). With `--sd-lambda L > 0` it is the paper's
GAN-SD: spectral decoupling (Pezeshki et al. 2021) on the discriminator for the first `--sd-epochs`.
After every epoch it also records the discriminator's loss w.r.t. the "real" label on the held-out
balanced validation set, for the rare class, split into images with and without the factor (Figure 3).

Run it:
    python gan.py --factor colour --rare 1                    # plain GAN, 200 epochs (a GPU job)
    python gan.py --factor colour --rare 1 --sd-lambda 0.8    # GAN-SD as in the paper
    python gan.py --factor colour --rare 1 --quick            # the CPU preset (below, BENCHMARKS.md)
    python gan.py --dataset cars --sd-lambda 0.8              # CompCars subset at 64x64
Outputs: runs/gan[-sd]/<factor>-balanced-seed<s>/ (D_u model), runs/gan[-sd]/<factor>-rare<k>-seed<s>/
(D_r model, result.json, samples.png, disc_loss.csv and disc_loss.png = Figure 3).

Architecture. The paper's appendix with the architectures is missing; its hyper-parameters (Adam 2e-4,
betas (0.5, 0.999), batch 64, 200 epochs, 100-d latent) are exactly the defaults of the widely used
PyTorch-GAN "vanilla GAN" (an MLP GAN after Goodfellow et al. 2014), so we use that MLP pair on RGB:
    G: z(100) -> 128 -> 256 -> 512 -> 1024 -> 3*H*W, tanh     BatchNorm + LeakyReLU(0.2) after every
                                                               hidden layer (no BatchNorm on the first)
    D: 3*H*W -> 512 -> 256 -> 1 logit                         LeakyReLU(0.2), no normalisation
`--hidden` sets the widest layer (1024 above; G uses hidden/8 .. hidden, D hidden/2 and hidden/4).
Cars: 64x64 inputs have 5.2x the pixels of 28x28, so every width is doubled (G up to 2048, D 1024 ->
512) with the same MLPs; beyond that only the first layer of D and the last of G grow with the image.
Two deliberate differences from PyTorch-GAN: D outputs logits and the loss is BCE-with-logits
(SD needs the logit, and it is the numerically stable form), and BatchNorm keeps its default eps
(PyTorch-GAN passes 0.8 in the eps slot).

Losses (Goodfellow et al. 2014, Algorithm 1 with k = 1, non-saturating generator loss):
    L_D = BCE(D(x), 1) + BCE(D(G(z)), 0) [+ lambda/2 * mean_i D(x_i)^2   while epoch < sd_epochs]
    L_G = BCE(D(G(z)), 1)
Spectral decoupling normalisation: the paper writes lambda/2 * ||y_hat||^2 (section 6.3); we add
lambda/2 times the MEAN over the batch of the squared logit of the REAL images (as public SD code does),
not the sum, so lambda does not depend on the batch size (the sum is 64x larger at batch 64). SD runs in
the first --sd-epochs epochs (default 40% of --epochs: the paper's 80 of 200), then training goes on
without it.

Sampling: from an exponential moving average of G's weights (decay --ema-decay, 0.999; Yazici et al.
2019, "The Unusual Effectiveness of Averaging in GAN Training"), whose BatchNorm statistics are then
re-estimated on 10,000 latents. Averaging smooths the iterates of the G/D game, which oscillate around
the equilibrium instead of settling on it; it changes no training step. `--ema-decay 0` samples the
trained G itself, as Goodfellow et al. do.

--quick (CPU, 2 cores): the first 20,000 MNIST digits (18,000 after the validation hold-out), 22
epochs (6,182 steps of batch 64 per model, SD if asked in the first 9), every width halved (--hidden
512), EMA decay 0.99 (at 0.999 the average of so short a run still holds its early, unreadable
weights); lr, betas, batch and latent as in the paper. The MLP stays: a small DCGAN (two transposed
convolutions) read no better per second of CPU, and the MLP's readability keeps rising with steps, so
the preset spends on steps all of its budget (10 minutes from cold, the oracles' training included)
that the oracles leave. Measured times, the curves and the z-tables: BENCHMARKS.md ("Sample quality").
"""
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
BETAS = (0.5, 0.999)                     # Radford et al. 2016; PyTorch-GAN's defaults, as the paper's
LATENT = 100                             # a 100-d standard Gaussian latent (Goodfellow et al. 2014)
SD_LAMBDA, SD_SHARE = 0.8, 0.4           # section 6.3: lambda 0.8 for the first 80 of 200 epochs
EMA_DECAY = 0.999                        # samples from an EMA of G's weights (Yazici et al. 2019)

# Presets fill only the options the user did not set (data.parse_args).
# --quick: the documented CPU preset (its time: BENCHMARKS.md). --smoke: seconds, for the tests (works on
#   the offline fixture).
PRESETS = {
    "quick": {"epochs": 22, "subset": 20000, "hidden": 512, "ema_decay": 0.99},
    "smoke": {"epochs": 1, "hidden": 64, "samples": 64},
}


def build_parser():
    parser = data.common_parser(__doc__, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR)
    parser.add_argument("--sd-lambda", type=float, default=0.0,
                        help=f"spectral decoupling strength lambda; 0 = plain GAN, {SD_LAMBDA:g} = the "
                             f"paper's GAN-SD (default: 0)")
    parser.add_argument("--sd-epochs", type=int, default=None,
                        help="apply SD during the first N epochs only (default: 40%% of --epochs, at "
                             "least 1: the paper's 80 of 200)")
    parser.add_argument("--hidden", type=int, default=1024,
                        help="widest hidden layer of G and D at 28x28; doubled for 64x64 cars "
                             "(default: 1024)")
    parser.add_argument("--ema-decay", type=float, default=EMA_DECAY,
                        help="decay of the EMA of G's weights that the samples come from; 0 = sample "
                             f"the trained G itself (default: {EMA_DECAY:g}; --quick: 0.99)")
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
    if args.hidden < 8:
        return f"--hidden must be >= 8 (got {args.hidden})"
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
def _block(n_in, n_out, norm=True):
    return [nn.Linear(n_in, n_out), *([nn.BatchNorm1d(n_out)] if norm else []), nn.LeakyReLU(0.2)]


class Generator(nn.Module):
    """MLP generator: z [B, 100] -> image [B, C, H, W] in [-1, 1]."""

    def __init__(self, shape, hidden=1024):
        super().__init__()
        self.shape, h = tuple(shape), hidden
        self.net = nn.Sequential(*_block(LATENT, h // 8, norm=False), *_block(h // 8, h // 4),
                                 *_block(h // 4, h // 2), *_block(h // 2, h),
                                 nn.Linear(h, math.prod(self.shape)), nn.Tanh())

    def forward(self, z):
        return self.net(z).view(-1, *self.shape)


class Discriminator(nn.Module):
    """MLP discriminator: image [B, C, H, W] in [-1, 1] -> one logit per image, [B]."""

    def __init__(self, shape, hidden=1024):
        super().__init__()
        h = hidden
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), h // 2), nn.LeakyReLU(0.2),
                                 nn.Linear(h // 2, h // 4), nn.LeakyReLU(0.2), nn.Linear(h // 4, 1))

    def forward(self, x):
        return self.net(x).squeeze(1)


def build(args, shape, device, gen):
    """G and D for images of `shape`, their weights drawn from a seed taken from `gen` (in a forked RNG,
    so the global torch state is left alone)."""
    hidden = args.hidden * (2 if shape[-1] > 32 else 1)   # cars (64x64): every width doubled
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen, device=gen.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G, D = Generator(shape, hidden), Discriminator(shape, hidden)
    return G.to(device), D.to(device)


def optimizers(G, D, args):
    """Adam for G and for D with the paper's lr and betas. fused=True does each update in one kernel
    instead of a dozen per parameter: the same algorithm, and on a 2-core CPU the optimiser was a
    quarter of an MLP GAN step (BENCHMARKS.md)."""
    return (torch.optim.Adam(m.parameters(), lr=args.lr, betas=BETAS, fused=True) for m in (G, D))


# --------------------------------------------------------------------------- loss
def d_loss(D, real, fake, sd_lambda=0.0):
    """L_D = BCE(D(x), 1) + BCE(D(G(z)), 0) [+ lambda/2 * mean(D(x)^2)]: Goodfellow et al.'s value
    function, negated; the spectral decoupling term (section 6.3) on the real batch's logits only."""
    logit_real, logit_fake = D(real), D(fake)
    loss = (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
            + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))
    if sd_lambda > 0:   # paper: lambda/2 * ||y_hat||^2; averaged over the batch, not summed
        loss = loss + sd_lambda / 2 * logit_real.pow(2).mean()
    return loss


def g_loss(D, fake):
    """Non-saturating generator loss, -log D(G(z)) (Goodfellow et al. 2014, section 3)."""
    logit = D(fake)
    return F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))


# --------------------------------------------------------------------------- training
def sd_active(epoch, args):
    """SD during the first --sd-epochs epochs (`epoch` counts from 0), then plain GAN training."""
    return args.sd_lambda > 0 and epoch < args.sd_epochs


def train_epoch(G, D, opt_g, opt_d, x, epoch, args, gen, ema=None):
    """One pass over the resident x in shuffled batches: one D step, then one G step (Algorithm 1 of
    Goodfellow et al. with k = 1), then the EMA of G follows. Returns the epoch's mean losses. No AMP:
    at batch 64 these MLPs are bound by kernel launches, not arithmetic, so autocast would gain nothing
    on a GPU, and fp16 would need a gradient scaler."""
    G.train(), D.train()
    lam = args.sd_lambda if sd_active(epoch, args) else 0.0
    perm = torch.randperm(x.shape[0], generator=gen, device=x.device)
    batches = perm.split(args.batch_size)
    if len(batches) > 1 and len(batches[-1]) < args.batch_size:
        batches = batches[:-1]   # a ragged last batch would skew BatchNorm's statistics
    sums = torch.zeros(2, device=x.device)
    bar = data.progress(batches, desc=f"epoch {epoch + 1}/{args.epochs}" + (" (SD)" if lam else ""))
    for i, idx in enumerate(bar):
        real = to_gan(x[idx])
        z = torch.randn(len(idx), LATENT, generator=gen, device=x.device)
        fake = G(z)
        loss_d = d_loss(D, real, fake.detach(), lam)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = g_loss(D, fake)   # against the D just updated
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
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
    ema = data.EMA(G, args.ema_decay) if args.ema_decay > 0 else None
    parts = {"G": G, "D": D, "opt_g": opt_g, "opt_d": opt_d, **({"G_ema": ema} if ema else {})}
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
            losses = train_epoch(G, D, opt_g, opt_d, x, epoch, args, gen, ema)
            data.stop_if_not_finite(losses, label, epoch, cell)
            dloss, rare_pair = record_disc_loss(dloss, D, val, epoch, args, which, dirs)
            history.append({"epoch": epoch + 1, **losses, **rare_pair, "seconds": time.time() - t_epoch})
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
    norms = [m for m in G.modules() if isinstance(m, nn.BatchNorm1d)]
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
        out.append(((G(z) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


# --------------------------------------------------------------------------- evaluation (Figure 3)
@torch.no_grad()
def real_loss_by_group(D, x_val, y_val, f_val):
    """{(class, factor): mean BCE of D's logits against the "real" label} on the validation set
    (section 6.2). A logit of 0 gives log 2, D's decision boundary."""
    was_training = D.training
    D.eval()
    logit = torch.cat([D(to_gan(x_val[i:i + 1000])) for i in range(0, len(x_val), 1000)])
    D.train(was_training)
    loss = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit), reduction="none")
    out = {}
    for c in torch.unique(y_val).tolist():
        for v in (0, 1):
            m = (y_val == c) & (f_val == v)
            if m.any():
                out[(c, v)] = loss[m].mean().item()
    return out


def record_disc_loss(rows, D, val, epoch, args, which, dirs):
    """After every epoch: D's real-label loss per class and factor value, appended to `rows` and written
    to disc_loss.csv (all classes, since the D_u model is shared by every rare class); with D_r, the
    Figure 3 plot every 10 epochs (D_u's CSV is read from its own folder). Returns the rows and the
    rare class's pair for the history."""
    groups = real_loss_by_group(D, *val)
    rows = [r for r in rows if r["epoch"] <= epoch]      # a redone epoch replaces its rows
    rows += [{"epoch": epoch + 1, "class": c, "factor": v, "loss": loss, "sd": int(sd_active(epoch, args))}
             for (c, v), loss in sorted(groups.items())]
    data.save_csv(rows, os.path.join(dirs[which], "disc_loss.csv"))
    if which == "r" and ((epoch + 1) % 10 == 0 or epoch + 1 == args.epochs):
        plot_disc_loss(dirs["u"], dirs["r"], args.rare, args)
    k = args.rare
    return rows, {"dloss_with": groups.get((k, 1), math.nan), "dloss_without": groups.get((k, 0), math.nan)}


def _read_dloss(folder, k):
    path = os.path.join(folder, "disc_loss.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as fh:
        return [(int(r["epoch"]), int(r["factor"]), float(r["loss"])) for r in csv.DictReader(fh)
                if int(r["class"]) == k]


def plot_disc_loss(u_dir, r_dir, k, args):
    """Figure 3: D's real-label loss on the rare class k, solid with the factor, dashed without, for
    D_u and D_r; the log 2 boundary; the SD phase shaded. Saved as disc_loss.png in r_dir."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for folder, which, colour in ((u_dir, "D_u", "tab:blue"), (r_dir, "D_r", "tab:red")):
        rows = _read_dloss(folder, k)
        for v, style, what in ((1, "-", "with"), (0, "--", "without")):
            pts = sorted((e, loss) for e, f, loss in rows if f == v)
            if pts:
                ax.plot(*zip(*pts), style, color=colour, label=f"{which}, {what} the factor")
    ax.axhline(math.log(2), color="green", ls=":", label="log 2 (logit 0)")
    if args.sd_lambda > 0 and args.sd_epochs > 0:
        ax.axvspan(0.5, args.sd_epochs + 0.5, color="grey", alpha=0.15,
                   label=f"SD phase (lambda {args.sd_lambda:g})")
    what = "cars" if args.dataset == "cars" else args.factor
    ax.set(xlabel="epoch", ylabel='D loss w.r.t. the "real" label (validation)',
           title=f"{names(args.sd_lambda)[0]}, {what}, rare class {k}, seed {args.seed}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    data.atomic_write(os.path.join(r_dir, "disc_loss.png"), lambda fh: fig.savefig(fh, format="png", dpi=120))
    plt.close(fig)


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
    # ... then the oracles label the samples and eq. 1 compares the factor's share per class.
    return ztest.evaluate(args, name, run_name, dirs, runs, device)


if __name__ == "__main__":
    main()
