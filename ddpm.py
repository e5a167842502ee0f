"""ddpm.py: a denoising diffusion probabilistic model (Ho et al. 2020) in the rare-generative-factor protocol.

What it does. Trains a DDPM on the balanced dataset D_u and on the skewed dataset D_r of one generative
factor (section 4 of "Do Generative Models Learn Rare Generative Factors?"), samples M images from each,
lets the oracle classifiers (section 5.2) label digit and factor, and prints the z-scores of eq. 1 per
class: the DM column of Tables 1-4 (and of Table 3 with --dataset cars). Training is Algorithm 1 of Ho et
al. (2020), sampling Algorithm 2 (ancestral, all T steps) or, with --sample-steps N, the strided
deterministic sampler of DDIM (Song et al. 2021, eq. 12) over N of the T steps. The sampler is recorded in
the run's config ("sampler" in config.json / result.json) but is not part of the trained model's identity:
after deleting a cell's result.json, a run with another sampler reuses both checkpoints and only resamples.

Run it:
    python ddpm.py --factor colour --rare 1                   # paper-length settings (a GPU job)
    python ddpm.py --factor colour --rare 1 --quick           # the CPU preset (below, BENCHMARKS.md)
    python ddpm.py --factor thin --rare 2 --sample-steps 100  # DDIM, 100 steps instead of 1000 ancestral
    python ddpm.py --dataset cars --epochs 800                # CompCars 64x64 (1,448 images: more epochs)
Outputs: runs/ddpm/<factor>-balanced-seed<s>/ (D_u model) and runs/ddpm/<factor>-rare<k>-seed<s>/ (D_r
model, result.json with the z-table and the sample-quality report, sample grids).

Choices (the paper's Appendix A with its architectures is not available):
- Diffusion: Ho et al.'s DDPM, T = 1000 steps of a fixed Gaussian forward process on data in [-1, 1], a
  U-Net trained to undo them, ancestral sampling with the posterior variance beta~_t (eq. 7) or DDIM,
  Adam, gradients clipped at norm 1, an EMA of the weights for sampling. By default it trains with
  convergence techniques that keep it that model and change only how fast training gets there: the
  cosine schedule (Nichol & Dhariwal 2021), v-prediction (Salimans & Ho 2022) with the min-SNR-5 loss
  weighting (Hang et al. 2023; any positive weighting of the denoising loss has the same optimum, the
  true denoiser), a 200-step learning-rate warm-up then a cosine decay to zero, zero-initialised
  residual outputs (as improved-diffusion), and bf16 autocast on CPUs that support it (faster there,
  BENCHMARKS.md). They are the default because a DDPM is the slowest of the three models to train and
  the study needs its samples readable. Ho et al.'s own settings are one command line away:
  --schedule linear --prediction eps --snr-gamma 0 --warmup 0 --lr-decay none --no-zero-init --no-cpu-bf16.
- Network: Ho et al.'s U-Net (the PixelCNN++ backbone) scaled down: residual blocks with GroupNorm + SiLU,
  and a sinusoidal time embedding (Transformer position encoding) through an MLP, ADDED to every block so
  that the network knows the noise level (a well-known minimal DDPM ignores t; test_ddpm.py checks ours
  does not). Resolutions 28-14-7 with channels w, 2w, 2w (cars: 64-32-16-8, w, 2w, 2w, 2w), --res-blocks
  per resolution, one self-attention block at the lowest resolution, where it is cheap (Ho et al. put one
  at 16x16). Width 64 with two blocks is 6.1M parameters: digits need far less than CIFAR's 35.7M. No
  dropout: Ho et al.'s 0.1 fights overfitting on CIFAR-10 over 800k steps; ours are short runs.
- Length: 40 epochs of 58,000 digits at batch 128 = 18,000 steps, where small MNIST DDPMs give clean
  digits; EMA decay 0.999 (Ho et al.'s 0.9999 suits their 800k steps; it would average over most of ours).
- --quick (CPU): 8 epochs of the first 20,000 digits (18,000 after the validation hold-out) at batch 64,
  2,256 steps per model with a peak rate of 2e-3 after 100 warm-up steps, width 32, one block per
  resolution, 25 DDIM steps, and --patch 2: 2x2 pixel patches folded into channels (PixelUnshuffle), so
  the U-Net runs at 14-7 instead of 28-14-7 and affords width 32; M = 5,000 samples per model (the
  paper's 1,000 stays the default), so that the readable reading (ztest) keeps about 100 confident
  samples of every class. A DDPM needs far more compute than a CPU gives in minutes: how readable its
  samples are against training time, and the time, are in BENCHMARKS.md.
"""
import argparse
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import data
import ztest

# --------------------------------------------------------------------------- configuration
EPOCHS, BATCH_SIZE, LR = 40, 128, 2e-4    # Ho et al. (2020): Adam, lr 2e-4, batch 128
T, BETA_1, BETA_T = 1000, 1e-4, 0.02      # Ho et al. (2020), section 4: linear schedule
COSINE_S = 0.008                          # Nichol & Dhariwal (2021), eq. 17: the cosine schedule's offset
WIDTH, RES_BLOCKS, EMA_DECAY = 64, 2, 0.999
SNR_GAMMA, WARMUP = 5.0, 200              # min-SNR-5 (Hang et al. 2023); learning-rate warm-up steps

# Presets fill only the options the user did not set (data.parse_args). --quick: the documented CPU
# preset (BENCHMARKS.md). --smoke: seconds, for the tests (works on the offline fixture).
PRESETS = {
    "quick": {"subset": 20000, "epochs": 8, "width": 32, "res_blocks": 1, "patch": 2, "batch_size": 64,
              "lr": 2e-3, "warmup": 100, "ema_decay": 0.995, "sample_steps": 25, "samples": 5000},
    "smoke": {"epochs": 1, "width": 8, "res_blocks": 1, "batch_size": 64, "sample_steps": 5, "samples": 64},
}
SAMPLING = ("sample_steps", "eta", "sample_batch", "sampler")   # change the samples, not the model


def build_parser():
    parser = data.common_parser(__doc__, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR)
    a = parser.add_argument
    a("--width", type=int, default=WIDTH, help=f"channels at full resolution, a multiple of 8 (default: {WIDTH})")
    a("--res-blocks", type=int, default=RES_BLOCKS, help=f"residual blocks per resolution (default: {RES_BLOCKS})")
    a("--patch", type=int, default=1, choices=(1, 2, 4), help="fold p x p pixel patches into channels before "
      "the U-Net: p^2 fewer positions per layer (default: 1)")
    a("--ema-decay", type=float, default=EMA_DECAY, help=f"decay of the weights' EMA used for sampling "
      f"(default: {EMA_DECAY})")
    a("--schedule", default="cosine", choices=("cosine", "linear"), help="noise schedule: cosine (Nichol & "
      "Dhariwal 2021) or linear (Ho et al.) (default: cosine)")
    a("--prediction", default="v", choices=("v", "eps"), help="what the U-Net predicts: v (Salimans & Ho "
      "2022) or the noise eps (Ho et al.) (default: v)")
    a("--snr-gamma", type=float, default=SNR_GAMMA, help=f"min-SNR-gamma loss weighting (Hang et al. 2023); "
      f"0 = the unweighted L_simple of Ho et al. (default: {SNR_GAMMA:g})")
    a("--warmup", type=int, default=WARMUP, help=f"learning-rate warm-up in steps (default: {WARMUP})")
    a("--lr-decay", default="cosine", choices=("cosine", "none"), help="after the warm-up, cosine decay to "
      "zero at the last step, or a constant rate as Ho et al. (default: cosine)")
    a("--zero-init", default=True, action=argparse.BooleanOptionalAction, help="zero the last layer of "
      "every residual branch and of the head, as improved-diffusion does (default: on)")
    a("--cpu-bf16", default=True, action=argparse.BooleanOptionalAction, help="bf16 autocast on CPUs that "
      "support it (measured faster, BENCHMARKS.md); GPUs always use AMP (default: on)")
    a("--sample-steps", type=int, default=0, help=f"0 = ancestral sampling over all T={T} steps (Algorithm 2); "
      f"N = DDIM over N evenly spaced steps (default: 0)")
    a("--eta", type=float, default=0.0, help="DDIM noise: 0 = deterministic, 1 = DDPM-like (default: 0.0)")
    a("--sample-batch", type=int, default=1000, help="images denoised at once; lower it when memory is "
      "short (default: 1000)")
    return parser


def check(args):
    """Model-specific validation; data.parse_args prints the message as one line and exits 2."""
    if args.width < 8 or args.width % 8:
        return f"--width must be a multiple of 8 (got {args.width})"
    if args.res_blocks < 1:
        return f"--res-blocks must be >= 1 (got {args.res_blocks})"
    if not 0 <= args.ema_decay < 1:
        return f"--ema-decay must be in [0, 1) (got {args.ema_decay:g})"
    if not (args.snr_gamma >= 0 and math.isfinite(args.snr_gamma)):
        return f"--snr-gamma must be a finite number >= 0 (got {args.snr_gamma:g}); 0 = unweighted"
    if args.warmup < 0:
        return f"--warmup must be >= 0 steps (got {args.warmup})"
    if not 0 <= args.sample_steps <= T:
        return f"--sample-steps must be 0 (ancestral) or 1..{T} (got {args.sample_steps})"
    if not 0 <= args.eta <= 1:
        return f"--eta must be in [0, 1] (got {args.eta:g})"
    if args.sample_batch < 1:
        return f"--sample-batch must be >= 1 (got {args.sample_batch})"
    # Recorded in config.json / result.json: which sampler produced the samples.
    args.sampler = (f"ancestral, T={T} steps (Ho et al. 2020, Algorithm 2)" if args.sample_steps == 0 else
                    f"DDIM, {args.sample_steps} of T={T} steps, eta={args.eta:g} (Song et al. 2021, eq. 12)")
    return None


# --------------------------------------------------------------------------- data
# D_u and D_r come from data.load_split as float tensors in [0, 1] resident on the device, [N, 3, 28, 28]
# for MNIST and [N, 3, 64, 64] for cars. The DDPM works on [-1, 1] (Ho et al., section 3.3).


# --------------------------------------------------------------------------- diffusion schedule
def schedule(device, kind="linear"):
    """The fixed forward process q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) and what Algorithms
    1 and 2 need from it. Index i = 0..T-1 stands for the paper's t = i + 1. linear: Ho et al.'s betas.
    cosine: alpha_bar_t = f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) * pi/2)^2 (Nichol & Dhariwal, eq.
    17), betas clipped at 0.999; it destroys the image more slowly, so fewer steps are wasted on noise."""
    if kind == "cosine":
        f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2
        beta = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        beta = torch.linspace(BETA_1, BETA_T, T, dtype=torch.float64)
    alpha = 1 - beta                                              # alpha_t = 1 - beta_t
    abar = torch.cumprod(alpha, 0)                                # alpha_bar_t = prod_{s<=t} alpha_s
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])   # alpha_bar_{t-1}, alpha_bar_0 = 1
    s = {"beta": beta, "abar": abar, "abar_prev": abar_prev,
         # posterior q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I), eq. 7:
         "post_var": beta * (1 - abar_prev) / (1 - abar),         # beta~_t = (1-abar_{t-1}) / (1-abar_t) beta_t
         "coef_x0": abar_prev.sqrt() * beta / (1 - abar),         # mu~_t = coef_x0 x_0 + coef_xt x_t
         "coef_xt": alpha.sqrt() * (1 - abar_prev) / (1 - abar),
         "snr": abar / (1 - abar)}                                # signal-to-noise ratio of x_t
    return {k: v.float().to(device) for k, v in s.items()}


def bcast(v, t):
    """Per-sample schedule values v[t] shaped [B, 1, 1, 1] to broadcast over images."""
    return v[t].view(-1, 1, 1, 1)


# --------------------------------------------------------------------------- model
def time_embedding(t, dim):
    """Sinusoidal embedding of the step (Vaswani et al. 2017, section 3.5), as in Ho et al.'s U-Net."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    arg = t.float()[:, None] * freq[None]
    return torch.cat([arg.sin(), arg.cos()], dim=1)


def norm(c):
    """Ho et al.'s GroupNorm: 32 groups at their width 128, i.e. 4 channels a group, so at smaller widths
    fewer groups. Never 1 channel a group: that would subtract each channel's mean and with it the time
    step, which enters as a per-channel bias (test_ddpm.py checks the output depends on t)."""
    return nn.GroupNorm(math.gcd(32, c // 4), c)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, + the projected time embedding, GroupNorm-SiLU-conv, + skip (Ho et al.)."""

    def __init__(self, c_in, c_out, t_dim):
        super().__init__()
        self.block1 = nn.Sequential(norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.t_proj = nn.Sequential(nn.SiLU(), nn.Linear(t_dim, c_out))
        self.block2 = nn.Sequential(norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, temb):
        h = self.block1(x) + self.t_proj(temb)[:, :, None, None]   # the time step enters every block
        return self.skip(x) + self.block2(h)


class Attention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, c):
        super().__init__()
        self.norm, self.qkv, self.out = norm(c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, 1, C, H * W).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)              # [B, 1, HW, C]
        return x + self.out(h.transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    """eps_theta(x_t, t): predicts the noise in x_t. Downsampling by strided convs, upsampling by nearest
    neighbour + conv, skip connections from every down-path block, attention at the lowest resolution.
    patch > 1 first folds p x p pixel patches into channels (PixelUnshuffle) and unfolds them at the end,
    so every layer runs on p^2 fewer positions: the CPU preset's way to afford a wider network."""

    def __init__(self, shape, width=WIDTH, res_blocks=RES_BLOCKS, patch=1):
        super().__init__()
        c, h, w = shape
        if h != w or h not in (28, 64) or h % patch:
            raise ValueError(f"UNet needs 3x28x28 or 3x64x64 images, divisible by the patch {patch} "
                             f"(got {c}x{h}x{w})")
        sizes = [h // patch]                  # halve down to 7x7 or 8x8: 28-14-7, 64-32-16-8 (patch 2: 14-7)
        while sizes[-1] % 2 == 0 and sizes[-1] > 8:
            sizes.append(sizes[-1] // 2)
        mult = [1, 2, 2, 2][:len(sizes)]      # channels w, 2w, 2w (, 2w): 6.1M parameters at w = 64 on MNIST
        self.shape, self.width, t_dim = tuple(shape), width, 4 * width
        self.temb = nn.Sequential(nn.Linear(width, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.stem = nn.Sequential(nn.PixelUnshuffle(patch), nn.Conv2d(c * patch ** 2, width, 3, padding=1))
        self.down, skips, ch = nn.ModuleList(), [width], width
        for i, m in enumerate(mult):
            for _ in range(res_blocks):
                self.down.append(ResBlock(ch, width * m, t_dim))
                ch = width * m
                skips.append(ch)
            if i < len(mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, t_dim), Attention(ch), ResBlock(ch, ch, t_dim)])
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mult))):
            for _ in range(res_blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), width * m, t_dim))
                ch = width * m
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)))
        self.head = nn.Sequential(norm(ch), nn.SiLU(), nn.Conv2d(ch, c * patch ** 2, 3, padding=1),
                                  nn.PixelShuffle(patch))

    def forward(self, x, t):
        temb = self.temb(time_embedding(t, self.width))
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], 1), temb) if isinstance(layer, ResBlock) else layer(h)
        return self.head(h)


def build(args, shape, device, gen):
    """The U-Net for images of `shape` and its EMA, the weights drawn from a seed taken from `gen` (in a
    forked RNG, so the global torch state is left alone)."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen, device=gen.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet(shape, args.width, args.res_blocks, args.patch)
    if args.zero_init:
        zero_init(net)
    net = net.to(device)
    return net, data.EMA(net, args.ema_decay)


def zero_init(net):
    """Zero the last layer of every residual branch (res blocks, attention) and of the head, as
    improved-diffusion does: each block starts as the identity and the network as the zero function,
    so early steps refine a working network instead of fighting random residuals."""
    for m in net.modules():
        last = {ResBlock: lambda b: b.block2[-1], Attention: lambda b: b.out}.get(type(m))
        if last is not None:
            nn.init.zeros_(last(m).weight), nn.init.zeros_(last(m).bias)
    nn.init.zeros_(net.head[2].weight), nn.init.zeros_(net.head[2].bias)


# --------------------------------------------------------------------------- loss
def diffusion_loss(net, x0, sch, gen, args):
    """Algorithm 1 of Ho et al.: t ~ Uniform{1..T}, eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t)
    eps (eq. 4), and a weighted MSE between the network's output and its target:
      --prediction eps: target eps, weight min(SNR_t, gamma) / SNR_t;
      --prediction v:   target v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022),
                        weight min(SNR_t, gamma) / (SNR_t + 1),
    the min-SNR-gamma weighting of Hang et al. (2023), which stops the nearly clean steps (large SNR)
    from dominating. Each of these is the same x_0-error weighted by min(SNR_t, gamma), and any positive
    weighting keeps the optimum (the true denoiser): it changes how fast training gets there, not the
    model. --snr-gamma 0 with --prediction eps is L_simple, eq. 14, exactly."""
    t = torch.randint(0, T, (x0.shape[0],), generator=gen, device=x0.device)
    eps = torch.randn(x0.shape, generator=gen, device=x0.device)
    abar, snr = bcast(sch["abar"], t), bcast(sch["snr"], t)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    with data.autocast(x0.device, args.cpu_bf16):
        pred = net(x_t, t).float()
    target = eps if args.prediction == "eps" else abar.sqrt() * eps - (1 - abar).sqrt() * x0
    if args.snr_gamma == 0:
        return F.mse_loss(pred, target)
    weight = snr.clamp(max=args.snr_gamma) / (snr if args.prediction == "eps" else snr + 1)
    return (weight * (pred - target) ** 2).mean()


def learning_rate(step, total, args):
    """Linear warm-up over --warmup steps, then constant (Ho et al.) or a cosine decay that reaches zero
    at the last step: a run ends on its best weights, whichever its length."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.lr_decay == "none":
        return args.lr
    return args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - args.warmup) / max(1, total - args.warmup))))


# --------------------------------------------------------------------------- training
def train_epoch(net, ema, opt, x, epoch, args, gen):
    """One pass over the resident x in shuffled batches (Algorithm 1 of Ho et al., repeated), the EMA
    following every step. Returns the epoch's mean loss per image."""
    net.train()
    sch = schedule(x.device, args.schedule)
    batches = torch.randperm(x.shape[0], generator=gen, device=x.device).split(args.batch_size)
    total, bar = torch.zeros((), device=x.device), data.progress(batches, desc=f"epoch {epoch + 1}")
    for i, idx in enumerate(bar):
        # the rate is a function of the step, so a resumed run follows the same schedule
        for group in opt.param_groups:
            group["lr"] = learning_rate(epoch * len(batches) + i, args.epochs * len(batches), args)
        loss = diffusion_loss(net, x[idx] * 2 - 1, sch, gen, args)     # data in [-1, 1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)         # Ho et al.'s gradient clipping
        opt.step()
        ema.update(net)
        total += loss.detach() * len(idx)
        if i % 20 == 0:                                          # .item() syncs a GPU: not every step
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return {"loss": total.item() / x.shape[0], "lr": opt.param_groups[0]["lr"]}


def train(which, args, dirs, device, started):
    """Section 4 for one dataset: train the DDPM on D_u (which="u") or D_r ("r") in its folder, resuming
    from the last epoch's checkpoint, then sample M images from the EMA network (a finished model whose
    samples were made with other sampling settings is only resampled). Returns (samples, history, timings)."""
    cell, label = dirs[which], "D_u" if which == "u" else f"D_r (rare {args.rare})"
    ck = data.open_checkpoint(cell, args, which, started, eval_keys=SAMPLING)
    if ck and ck["epoch"] >= args.epochs:
        cached = data.cached_samples(cell, args, which, eval_keys=SAMPLING)
        if cached is not None:
            print(f"{label}: trained model and samples found in {cell}")
            return cached, ck["history"], {}
    gen = data.set_seed(args.seed, device)
    net, ema = build(args, data.image_shape(args), device, gen)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    parts = {"unet": net, "ema": ema, "opt": opt}
    start, history, _ = data.restore(ck, parts, gen, label)
    timings = {}
    if start < args.epochs:
        t0 = time.time()
        x = data.load_split(args, which, device)[0]
        data.save_config(cell, which, len(x), device, args)
        timings["data"] = time.time() - t0
        print(f"{label}: {len(x)} images, epochs {start + 1}..{args.epochs} -> {cell}")
        t0 = time.time()
        for epoch in range(start, args.epochs):
            t_epoch = time.time()
            losses = train_epoch(net, ema, opt, x, epoch, args, gen)
            data.stop_if_not_finite(losses, label, epoch, cell)
            history.append({"epoch": epoch + 1, **losses, "seconds": time.time() - t_epoch})
            data.save_checkpoint(cell, parts, gen, epoch + 1, args, which, history, eval_keys=SAMPLING)
            data.log_epoch(label, history, args, device, first=epoch == start)
        timings["train"] = time.time() - t0
    t0 = time.time()
    x0 = sample(ema.net, args.samples, args, data.sampling_generator(args.seed, device))
    samples = data.save_samples(cell, x0, args, which, eval_keys=SAMPLING)
    timings["sample"] = time.time() - t0
    return samples, history, timings


# --------------------------------------------------------------------------- sampling
def timesteps(args):
    """The steps visited, from T down to 1 (0-based): all T (ancestral) or N evenly spaced (DDIM)."""
    if args.sample_steps == 0:
        return list(range(T - 1, -1, -1))
    return torch.linspace(T - 1, 0, args.sample_steps).round().long().unique_consecutive().tolist()


@torch.inference_mode()
def denoise(net, x, args, gen):
    """x_T ~ N(0, I) -> x_0. Each step predicts x_0: from eps, x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
    (eq. 4 solved for x_0); from v, x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v. It is clipped to the data
    range [-1, 1] as in Ho et al.'s code."""
    sch, steps = schedule(x.device, args.schedule), timesteps(args)
    for j, i in enumerate(steps):
        t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
        with data.autocast(x.device, args.cpu_bf16):
            out = net(x, t).float()
        abar = sch["abar"][i]
        if args.prediction == "eps":
            x0 = (x - (1 - abar).sqrt() * out) / abar.sqrt()
        else:
            x0 = abar.sqrt() * x - (1 - abar).sqrt() * out
        x0 = x0.clamp(-1, 1)
        if args.sample_steps == 0:
            # Algorithm 2: x_{t-1} = mu~_t(x_t, x_0) + sigma_t z with sigma_t^2 = beta~_t (eq. 7). Without the
            # clip this mean equals 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps), line 4.
            x = sch["coef_x0"][i] * x0 + sch["coef_xt"][i] * x
            if i > 0:                                            # z = 0 at t = 1
                x = x + sch["post_var"][i].sqrt() * torch.randn(x.shape, generator=gen, device=x.device)
        else:
            # DDIM (Song et al. 2021, eq. 12) from step i to the next visited step (abar = 1 after the last)
            prev = sch["abar"][steps[j + 1]] if j + 1 < len(steps) else torch.ones((), device=x.device)
            eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()    # the eps consistent with the clipped x_0
            sigma = args.eta * ((1 - prev) / (1 - abar) * (1 - abar / prev)).sqrt()
            x = prev.sqrt() * x0 + (1 - prev - sigma ** 2).clamp(min=0).sqrt() * eps
            if args.eta > 0 and j + 1 < len(steps):
                x = x + sigma * torch.randn(x.shape, generator=gen, device=x.device)
    return x


@torch.inference_mode()
def sample(net, n, args, gen):
    """n images from the (EMA) network, --sample-batch at a time -> uint8 [n, 3, H, W]."""
    print(f"sampling {n} images: {args.sampler}")
    out = []
    for m in range(0, n, args.sample_batch):
        x = torch.randn((min(args.sample_batch, n - m), *net.shape), generator=gen, device=gen.device)
        x0 = denoise(net, x, args, gen)
        out.append(((x0 + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------- evaluation
# ztest.evaluate: the oracles, eq. 1, and the sample-quality report (how many samples read as digits).


# --------------------------------------------------------------------------- main
def main(argv=None):
    args = data.parse_args(build_parser(), argv, presets=PRESETS, check=check)
    device, started = data.pick_device(args.device), time.time()
    dirs = data.run_dirs(args, "ddpm")
    res = ztest.finished_result(dirs, args, eval_keys=SAMPLING)
    if res is not None:
        return res
    # Section 4: one DDPM on D_u, one on D_r, M samples from each. The D_u model serves every rare
    # class, so its folder is locked while it trains: parallel cells never train it twice.
    runs = {}
    for which in data.stages(args):
        with data.file_lock(os.path.join(dirs[which], ".lock")):
            runs[which] = train(which, args, dirs, device, started)
    # The oracles label the samples and eq. 1 compares the factor's share per class.
    return ztest.evaluate(args, "DM", "ddpm", dirs, runs, device, eval_keys=SAMPLING)


if __name__ == "__main__":
    main()
