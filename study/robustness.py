"""The degradations of images and the oracles' robustness report.

Generated digits are softer, noisier and fainter than real ones. The robust oracle recipe (oracles.py)
trains on real digits under random draws of these degradations, and the report measures both oracles of
a factor under each of them on real held-out digits (docs/oracles.md has the tables):

    python oracles.py --all --robustness

oracles.py imports this module, so it imports only data: the report gets the oracles and their batched
forward pass (oracles._logits) as arguments.
"""
import numpy as np
import torch
import torch.nn.functional as F

import data

# The report's (degradation, level) pairs, on real held-out digits.
DEGRADATIONS = (("clean", 0), ("blur", 0.5), ("blur", 0.8), ("blur", 1.0), ("blur", 1.3), ("noise", 0.1),
                ("noise", 0.2), ("speckle", 0.3), ("contrast", 0.6), ("contrast", 0.4), ("mix", 0.2),
                ("mix", 0.35))


# --------------------------------------------------------------------------- degradations
def blur(x, sigma):
    """Gaussian blur of float images [B, C, H, W], one sigma per image (a scalar or a [B] tensor); sigma 0
    leaves an image as it is. Separable, zero padding (the background is black), radius 6 >= 4 sigma."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(len(x))
    t = torch.arange(-6, 7, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(x.shape[1], 0)       # [B*C, 13]
    y = x.reshape(1, -1, *x.shape[2:])
    y = F.conv2d(y, k[:, None, None, :], padding=(0, 6), groups=k.shape[0])
    y = F.conv2d(y, k[:, None, :, None], padding=(6, 0), groups=k.shape[0])
    return y.reshape(x.shape)


def mix(x, a):
    """Move a share a [B] of the red channel into the green one, and of the green into the red."""
    a = a[:, None, None]
    red, green = x[:, 0], x[:, 1]
    return torch.stack([(1 - a) * red + a * green, (1 - a) * green + a * red, x[:, 2]], 1)


def degrade(x, kind, level, gen=None):
    """One degradation of float images in [0, 1], for the robustness report: blur (sigma), noise
    (additive Gaussian, std), speckle (x (1 + level N(0, 1))), contrast (x * level), mix (a share `level`
    of red moved into green and of green into red), clean."""
    noise = lambda: torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    if kind == "blur":
        return blur(x, level)
    if kind == "noise":
        return (x + level * noise()).clamp(0, 1)
    if kind == "speckle":
        return (x * (1 + level * noise())).clamp(0, 1)
    if kind == "contrast":
        return x * level
    if kind == "mix":
        return mix(x, torch.full((len(x),), level, dtype=x.dtype, device=x.device))
    if kind == "clean":
        return x
    raise ValueError(f"unknown degradation {kind!r}; accepted: blur, noise, speckle, contrast, mix, clean")


def degraded(x, kind, level, seed=0, batch_size=2000):
    """uint8 images [N, C, H, W] (numpy) under one degradation, as uint8 again (generated samples are
    uint8 too); the noise of a batch comes from a generator seeded with (seed, batch)."""
    out = []
    for i in range(0, len(x), batch_size):
        gen = torch.Generator().manual_seed(seed * 100_003 + i)
        xb = torch.as_tensor(x[i:i + batch_size]).float().div_(255)
        out.append(degrade(xb, kind, level, gen).mul_(255).round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------- the report
def report(o, factor, logits, root=None, cache_dir=None, data_seed=0):
    """Both oracles o of an MNIST factor on real held-out digits (each test digit once, half with the
    factor) under every degradation of DEGRADATIONS: rows [degradation, factor acc, called, truth, label
    acc, label confident share (p > 0.9)]. logits(net, uint8 images): oracles.py's forward pass."""
    x, y, f = data.reference_digits(factor, "u", seed=data_seed, root=root, cache_dir=cache_dir)
    rows = []
    for kind, level in DEGRADATIONS:
        xb = degraded(x, kind, level, seed=1)
        called = logits(o["factor"], xb).argmax(1).numpy()
        p_label = F.softmax(logits(o["label"], xb), 1)
        rows.append([f"{kind} {level:g}" if kind != "clean" else "clean", f"{np.mean(called == f):.1%}",
                     f"{called.mean():.1%}", f"{f.mean():.1%}", f"{np.mean(p_label.argmax(1).numpy() == y):.1%}",
                     f"{np.mean(p_label.amax(1).numpy() > 0.9):.1%}"])
    return rows


def format_report(factor, recipe, rows):
    """The report of one factor as text, for oracles.py's command line."""
    return (f"\nRobustness, {factor} ({recipe} recipe), on 10,000 real held-out digits:\n"
            + data.text_grid(["degradation", "factor acc", "called", "truth", "label acc", "label p > 0.9"], rows))
