"""ddpm.py: a denoising diffusion probabilistic model (Ho et al. 2020) on the rare-generative-factor protocol.

Section 4 of "Do Generative Models Learn Rare Generative Factors?": one DDPM trained on the balanced
dataset D_u and one on the skewed D_r of a factor; M samples from each, labelled by the oracles (section
5.2), give the z-scores of eq. 1 per class (the DM column of Tables 1-4). Training is Ho et al.'s
Algorithm 1; sampling their Algorithm 2 (all T steps) or, with --sample-steps N, DDIM over N steps.

    python ddpm.py --factor colour --rare 1                   # paper-length settings (a GPU job)
    python ddpm.py --factor colour --rare 1 --quick           # the CPU preset
    python ddpm.py --factor thin --rare 2 --sample-steps 100  # DDIM, 100 steps instead of 1000 ancestral

Choices (the paper's appendix with the architectures is missing): Ho et al.'s U-Net scaled down, T = 1000,
Adam with gradient clipping, an EMA of the weights for sampling, 40 epochs at batch 128, and techniques
that speed training up without changing what it converges to (cosine schedule, v-prediction with min-SNR-5
weighting, rate warm-up and decay, zero-initialised residual branches). Why each: docs/models.md.
"""
import argparse
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import data   # data.*: data.py's own, plus Checkpoint, EMA, autocast, progress... re-exported from study/runs.py
import ztest

# --------------------------------------------------------------------------- configuration
EPOCHS, BATCH_SIZE, LR = 40, 128, 2e-4    # Ho et al. (2020): Adam, lr 2e-4, batch 128
T, BETA_1, BETA_T, COSINE_S = 1000, 1e-4, 0.02, 0.008   # Ho et al., section 4; cosine s: Nichol & Dhariwal eq. 17
WIDTH, RES_BLOCKS, EMA_DECAY, SNR_GAMMA, WARMUP = 64, 2, 0.999, 5.0, 200   # min-SNR-5 (Hang et al. 2023)
# Presets fill only the options the user did not set (data.parse_args); docs/models.md says why these.
PRESETS = {"quick": {"subset": 20000, "epochs": 8, "width": 32, "res_blocks": 1, "patch": 2, "batch_size": 64,
                     "lr": 2e-3, "warmup": 100, "ema_decay": 0.995, "sample_steps": 25, "samples": 5000},
           "cpu_full": {"epochs": 40},                                   # --quick, 5x longer
           "smoke": {"epochs": 1, "width": 8, "res_blocks": 1, "batch_size": 64, "sample_steps": 5, "samples": 64}}
SAMPLING = ("sample_steps", "eta", "sample_batch", "sampler")   # change the samples, not the model


def build_parser():
    parser = data.common_parser(__doc__, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR)
    a, on_off = parser.add_argument, argparse.BooleanOptionalAction
    a("--width", type=int, default=WIDTH, help=f"channels at full resolution, a multiple of 8 (default: {WIDTH})")
    a("--res-blocks", type=int, default=RES_BLOCKS, help=f"residual blocks per resolution (default: {RES_BLOCKS})")
    a("--patch", type=int, default=1, choices=(1, 2, 4), help="fold p x p pixel patches into channels (default: 1)")
    a("--ema-decay", type=float, default=EMA_DECAY, help=f"decay of the weights' EMA (default: {EMA_DECAY})")
    a("--schedule", default="cosine", choices=("cosine", "linear"), help="noise schedule (default: cosine)")
    a("--prediction", default="v", choices=("v", "eps"), help="the U-Net predicts v or eps (default: v)")
    a("--snr-gamma", type=float, default=SNR_GAMMA, help=f"min-SNR weighting; 0 = none (default: {SNR_GAMMA:g})")
    a("--warmup", type=int, default=WARMUP, help=f"learning-rate warm-up in steps (default: {WARMUP})")
    a("--lr-decay", default="cosine", choices=("cosine", "none"), help="after the warm-up (default: cosine)")
    a("--zero-init", default=True, action=on_off, help="zero each residual branch's last layer (default: on)")
    a("--cpu-bf16", default=True, action=on_off, help="bf16 autocast on CPUs with it (default: on)")
    a("--sample-steps", type=int, default=0, help=f"0 = ancestral over all T={T} steps; N = DDIM over N (default: 0)")
    a("--eta", type=float, default=0.0, help="DDIM noise: 0 = deterministic, 1 = DDPM-like (default: 0.0)")
    a("--sample-batch", type=int, default=1000, help="images denoised at once (default: 1000)")
    return parser


def check(args):
    """Model-specific validation (data.parse_args: one line, exit 2); records the sampler in args."""
    bad = [(args.width < 8 or args.width % 8, f"--width must be a multiple of 8 (got {args.width})"),
           (args.res_blocks < 1, f"--res-blocks must be >= 1 (got {args.res_blocks})"),
           (not 0 <= args.ema_decay < 1, f"--ema-decay must be in [0, 1) (got {args.ema_decay:g})"),
           (not 0 <= args.snr_gamma < float("inf"), f"--snr-gamma must be a finite number >= 0 (got {args.snr_gamma:g})"),
           (args.warmup < 0, f"--warmup must be >= 0 steps (got {args.warmup})"),
           (not 0 <= args.sample_steps <= T, f"--sample-steps must be 0 (ancestral) or 1..{T} (got {args.sample_steps})"),
           (not 0 <= args.eta <= 1, f"--eta must be in [0, 1] (got {args.eta:g})"),
           (args.sample_batch < 1, f"--sample-batch must be >= 1 (got {args.sample_batch})")]
    args.sampler = (f"ancestral, T={T} steps (Ho et al. 2020, Algorithm 2)" if args.sample_steps == 0 else
                    f"DDIM, {args.sample_steps} of T={T} steps, eta={args.eta:g} (Song et al. 2021, eq. 12)")
    return next((msg for is_bad, msg in bad if is_bad), None)


# --------------------------------------------------------------------------- model
def time_embedding(t, dim):
    """Sinusoidal embedding of the step (Vaswani et al. 2017, section 3.5), as in Ho et al.'s U-Net."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    arg = t.float()[:, None] * freq[None]
    return torch.cat([arg.sin(), arg.cos()], dim=1)


def norm(c):
    """GroupNorm, 4 channels a group as Ho et al.'s; 1 a group would remove t, a per-channel bias."""
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
        return x + self.out(F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    """eps_theta(x_t, t) (or v): strided convs down, nearest neighbour + conv up, skips from every down-path
    block, attention at the lowest resolution; patch p folds p x p pixels into channels (PixelUnshuffle)."""

    def __init__(self, shape, width=WIDTH, res_blocks=RES_BLOCKS, patch=1):
        super().__init__()
        c, h, w = shape
        if h != w or h not in (28, 64) or h % patch:
            raise ValueError(f"UNet needs 3x28x28 or 3x64x64 images divisible by the patch {patch} (got {c}x{h}x{w})")
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
                skips.append(ch := width * m)
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
        hs = [h := self.stem(x)]                                  # the skips, popped on the way up
        for layer in self.down:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], 1), temb) if isinstance(layer, ResBlock) else layer(h)
        return self.head(h)


def build(args, shape, device, gen):
    """The U-Net for images of `shape` and its EMA, the weights from a seed drawn from `gen` (global RNG alone)."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen, device=gen.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet(shape, args.width, args.res_blocks, args.patch)
    if args.zero_init:
        zero_init(net)
    return net.to(device), data.EMA(net, args.ema_decay)          # (.to moves net in place, before the copy)


def zero_init(net):
    """Zero the last layer of every residual branch and of the head (improved-diffusion): blocks start as
    the identity, so early steps refine a working network instead of fighting random residuals."""
    lasts = [m.block2[-1] for m in net.modules() if isinstance(m, ResBlock)]
    for layer in lasts + [m.out for m in net.modules() if isinstance(m, Attention)] + [net.head[2]]:
        nn.init.zeros_(layer.weight), nn.init.zeros_(layer.bias)


# --------------------------------------------------------------------------- loss
def schedule(device, kind="linear"):
    """The forward process q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) and what Algorithms 1 and 2
    need from it; index i = 0..T-1 is the paper's t = i + 1. kind: Ho et al.'s linear betas, or cosine."""
    if kind == "cosine":   # alpha_bar_t = f(t) / f(0) (Nichol & Dhariwal, eq. 17), betas clipped at 0.999
        f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2
        beta = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        beta = torch.linspace(BETA_1, BETA_T, T, dtype=torch.float64)
    alpha = 1 - beta                                              # alpha_t = 1 - beta_t
    abar = torch.cumprod(alpha, 0)                                # alpha_bar_t = prod_{s<=t} alpha_s
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])   # alpha_bar_{t-1}, alpha_bar_0 = 1
    s = {"beta": beta, "abar": abar, "abar_prev": abar_prev,
         "post_var": beta * (1 - abar_prev) / (1 - abar),         # q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I),
         "coef_x0": abar_prev.sqrt() * beta / (1 - abar),         # eq. 7: mu~_t = coef_x0 x_0 + coef_xt x_t
         "coef_xt": alpha.sqrt() * (1 - abar_prev) / (1 - abar),
         "snr": abar / (1 - abar)}                                # signal-to-noise ratio of x_t
    return {k: v.float().to(device) for k, v in s.items()}


def diffusion_loss(net, x0, sch, gen, args):
    """Algorithm 1 of Ho et al.: t ~ Uniform{1..T}, eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
    (eq. 4), the MSE to eps or to v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022), weighted
    by min-SNR-gamma (Hang et al. 2023). --snr-gamma 0 with --prediction eps is L_simple, eq. 14, exactly."""
    t = torch.randint(0, T, (x0.shape[0],), generator=gen, device=x0.device)
    eps = torch.randn(x0.shape, generator=gen, device=x0.device)
    abar, snr = sch["abar"][t].view(-1, 1, 1, 1), sch["snr"][t].view(-1, 1, 1, 1)   # per image, broadcast
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    with data.autocast(x0.device, args.cpu_bf16):
        pred = net(x_t, t).float()
    target = eps if args.prediction == "eps" else abar.sqrt() * eps - (1 - abar).sqrt() * x0
    if args.snr_gamma == 0:
        return F.mse_loss(pred, target)
    weight = snr.clamp(max=args.snr_gamma) / (snr if args.prediction == "eps" else snr + 1)
    return (weight * (pred - target) ** 2).mean()


def learning_rate(step, total, args):
    """Linear warm-up over --warmup steps, then constant (Ho et al.) or a cosine decay to 0 at the last step."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.lr_decay == "none":
        return args.lr
    return args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - args.warmup) / max(1, total - args.warmup))))


# --------------------------------------------------------------------------- training
def train_epoch(net, ema, opt, x, epoch, args, gen):
    """One pass over x in shuffled batches (Algorithm 1, repeated), the EMA following every step."""
    net.train()
    sch = schedule(x.device, args.schedule)
    batches = torch.randperm(x.shape[0], generator=gen, device=x.device).split(args.batch_size)
    total, bar = torch.zeros((), device=x.device), data.progress(batches, desc=f"epoch {epoch + 1}")
    for i, idx in enumerate(bar):
        for group in opt.param_groups:                          # a function of the step: resumes follow it
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
    """Section 4 for one dataset: the DDPM trained on D_u (which="u") or D_r ("r"), then M samples from its EMA."""
    ck = data.Checkpoint(dirs[which], args, which, device, started, eval_keys=SAMPLING)
    if (samples := ck.finished_samples()) is not None:      # trained, and sampled with these settings
        return samples, ck.history, {}
    gen = data.set_seed(args.seed, device)
    net, ema = build(args, data.image_shape(args), device, gen)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    parts = {"unet": net, "ema": ema, "opt": opt}
    ck.restore(parts, gen)
    timings, t0 = {}, time.time()
    if ck.epoch < args.epochs:
        x = data.load_split(args, which, device)[0]
        ck.begin(len(x))
        timings["data"], t0 = time.time() - t0, time.time()
        for epoch in range(ck.epoch, args.epochs):
            t_epoch = time.time()
            losses = train_epoch(net, ema, opt, x, epoch, args, gen)
            ck.save(parts, gen, {"epoch": epoch + 1, **losses, "seconds": time.time() - t_epoch})
        timings["train"], t0 = time.time() - t0, time.time()
    samples = ck.save_samples(sample(ema.net, args.samples, args, data.sampling_generator(args.seed, device)))
    timings["sample"] = time.time() - t0
    return samples, ck.history, timings


# --------------------------------------------------------------------------- sampling
def timesteps(args):
    """The steps visited, from T down to 1 (0-based): all T (ancestral) or N evenly spaced (DDIM)."""
    if args.sample_steps == 0:
        return list(range(T - 1, -1, -1))
    return torch.linspace(T - 1, 0, args.sample_steps).round().long().unique_consecutive().tolist()


@torch.inference_mode()
def denoise(net, x, args, gen):
    """x_T ~ N(0, I) -> x_0. Each step predicts x_0 (from eps: eq. 4 solved for x_0), clipped to [-1, 1] as
    in Ho et al.'s code, then steps to the next visited t: Algorithm 2, or DDIM."""
    sch, steps = schedule(x.device, args.schedule), timesteps(args)
    for j, i in enumerate(steps):
        t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
        with data.autocast(x.device, args.cpu_bf16):
            out = net(x, t).float()
        abar = sch["abar"][i]
        if args.prediction == "eps":                             # eq. 4 solved for x_0
            x0 = ((x - (1 - abar).sqrt() * out) / abar.sqrt()).clamp(-1, 1)
        else:                                                    # x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v
            x0 = (abar.sqrt() * x - (1 - abar).sqrt() * out).clamp(-1, 1)
        if args.sample_steps == 0:   # Algorithm 2: x_{t-1} = mu~_t(x_t, x_0) + sigma_t z, sigma_t^2 = beta~_t
            x = sch["coef_x0"][i] * x0 + sch["coef_xt"][i] * x
            if i > 0:                                            # z = 0 at t = 1
                x = x + sch["post_var"][i].sqrt() * torch.randn(x.shape, generator=gen, device=x.device)
        else:                        # DDIM (Song et al. 2021, eq. 12) to the next visited step (abar = 1 at the end)
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
        out.append(((denoise(net, x, args, gen) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------- main
def main(argv=None):
    args = data.parse_args(build_parser(), argv, presets=PRESETS, check=check)
    device, started = data.pick_device(args.device), time.time()
    dirs = data.run_dirs(args, "ddpm")
    if (res := ztest.finished_result(dirs, args, eval_keys=SAMPLING)) is not None:
        return res
    runs = {}
    for which in data.stages(args):     # D_u, then D_r; the lock: D_u is shared by every rare class
        with data.file_lock(os.path.join(dirs[which], ".lock")):
            runs[which] = train(which, args, dirs, device, started)
    return ztest.evaluate(args, "DM", "ddpm", dirs, runs, device, eval_keys=SAMPLING)   # oracles, eq. 1, quality


if __name__ == "__main__":
    main()
