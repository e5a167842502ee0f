"""The candidates of docs/BENCHMARKS.md, "Cheaper fitting presets": the GAN's and the DM's training on one
D_r cell with the candidate's settings, EMA snapshots at chosen epochs, each snapshot sampled as the model
script samples it and read by its fit (study.morphometry.fit_of_samples), and the step benchmarks.
Not part of the study: gan.py and ddpm.py are what the presets run. From the repository root:

    PYTHONPATH=. python docs/candidates/cheaper_presets.py gan-train OUT --lr-g 8e-4 --lr-d 4e-4 --width 16 \
        --batch 32 --epochs 40 --snap 16,20,24,28,32,36,40          # the GAN on thick, rare 1, seed 1, D_r
    PYTHONPATH=. python docs/candidates/cheaper_presets.py gan-eval OUT/ep40.pt [0.999|G]
    PYTHONPATH=. python docs/candidates/cheaper_presets.py dm-train OUT --snap 24 -- --width 24   # ddpm.py options
    PYTHONPATH=. python docs/candidates/cheaper_presets.py dm-eval OUT/ep40.pt [STEPS ETA]
    PYTHONPATH=. python docs/candidates/cheaper_presets.py bench                 # steps/s, one thread
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

import data
import ddpm
import gan
from study import morphometry

CELL = ["--factor", "thick", "--rare", "1", "--seed", "1", "--stage", "r", "--runs", "/tmp/unused"]


class UpG(nn.Module):
    """The "lighter G" of issue 37: gan.Generator with each 4x4 transposed conv replaced by a nearest
    upsampling and a 3x3 conv (9/16 of the multiply-adds per output pixel of a dense 4x4 kernel)."""
    def __init__(self, width=32):
        super().__init__()
        ch = [width * 4, width * 2, width]
        layers = [nn.Linear(gan.LATENT, ch[0] * 49, bias=False), nn.Unflatten(1, (ch[0], 7, 7)),
                  nn.BatchNorm2d(ch[0]), nn.ReLU()]
        for ci, co in zip(ch, ch[1:]):
            layers += [nn.Upsample(scale_factor=2), nn.Conv2d(ci, co, 3, 1, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(ch[-1], 3, 3, 1, 1), nn.Tanh())

    def forward(self, z):
        return self.net(z)


def make_g(arch, width):
    return UpG(width) if arch == "up" else gan.Generator((3, 28, 28), width)


def gan_step(G, D, opt_g, opt_d, real, z, device):
    """One step of gan.py's non-saturating loss (D, then G on the same fakes), bf16 autocast on the CPU."""
    with data.autocast(device, True):
        fake = G(z)
        loss_d = gan.d_loss(D, real, fake.detach(), 0.0)
    opt_d.zero_grad(set_to_none=True); loss_d.backward(); opt_d.step()
    with data.autocast(device, True):
        loss_g = gan.g_loss(D, fake)
    opt_g.zero_grad(set_to_none=True); loss_g.backward(); opt_g.step()
    return loss_d.item(), loss_g.item()


def gan_train(o):
    args = data.parse_args(gan.build_parser(), ["--cpu-full", *CELL], presets=gan.PRESETS, check=gan.check)
    device, gen = torch.device("cpu"), data.set_seed(args.seed, torch.device("cpu"))
    G, D = make_g(o.g_arch, o.width), gan.Discriminator((3, 28, 28), o.d_width or o.width, True, o.pack)
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=lr, betas=(o.beta1, o.beta2), fused=True)
                    for m, lr in ((G, o.lr_g), (D, o.lr_d)))
    ema = data.EMA(G, 0.999)
    x = data.load_split(args, "r", device)[0]
    nb, snaps = x.shape[0] // o.batch, {int(s) for s in o.snap.split(",") if s} | {o.epochs}
    for epoch in range(1, o.epochs + 1):
        t0 = time.time()
        for idx in torch.randperm(x.shape[0], generator=gen).split(o.batch)[:nb]:
            ld, lg = gan_step(G, D, opt_g, opt_d, x[idx] * 2 - 1, torch.randn(len(idx), gan.LATENT, generator=gen), device)
            ema.update(G)
        print(f"epoch {epoch} {time.time() - t0:.1f}s D {ld:.3f} G {lg:.3f}", flush=True)
        if epoch in snaps:
            torch.save({"config": {**vars(o), "seed": args.seed}, "G": G.state_dict(), "ema": ema.net.state_dict()},
                       os.path.join(o.out, f"ep{epoch}.pt"))


def read_fit(samples, path, tag):
    """Save the samples beside the snapshot, read the fit of thick, rare 1 and write it as fit.json."""
    folder = path[:-3] + tag
    os.makedirs(folder, exist_ok=True)
    np.savez(os.path.join(folder, "samples.npz"), x=samples.numpy())
    fit = morphometry.fit_of_samples(folder, "thick", 1)
    with open(os.path.join(folder, "fit.json"), "w") as fh:
        json.dump(fit, fh)
    print(folder, json.dumps(fit.get("rare")))


def gan_eval(path, which="0.999"):
    ck = torch.load(path, weights_only=False)
    o = ck["config"]
    G = make_g(o["g_arch"], o["width"])
    G.load_state_dict(ck["G"] if which == "G" else ck["ema"])
    gen = data.sampling_generator(o["seed"], torch.device("cpu"))          # as gan.py samples: 10,000, standing BN
    read_fit(gan.sample(gan.standing_stats(G, gen), 10000, gen), path, "_" + which)


def dm_train(o):
    args = data.parse_args(ddpm.build_parser(), ["--cpu-full", *CELL, *o.extra], presets=ddpm.PRESETS, check=ddpm.check)
    device, gen = torch.device("cpu"), data.set_seed(args.seed, torch.device("cpu"))
    net, ema = ddpm.build(args, (3, 28, 28), device, gen)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    x, snaps = data.load_split(args, "r", device)[0], {int(s) for s in o.snap.split(",") if s} | {args.epochs}
    for epoch in range(args.epochs):
        t0 = time.time()
        loss = ddpm.train_epoch(net, ema, opt, x, epoch, args, gen)
        print(f"epoch {epoch + 1} {time.time() - t0:.1f}s loss {loss['loss']:.4f}", flush=True)
        if epoch + 1 in snaps:
            torch.save({"args": vars(args), "ema": ema.net.state_dict()}, os.path.join(o.out, f"ep{epoch + 1}.pt"))


def dm_eval(path, steps=None, eta=None):
    ck = torch.load(path, weights_only=False)
    args = argparse.Namespace(**ck["args"])
    args.sample_steps, args.eta = int(steps or args.sample_steps), float(eta if eta is not None else args.eta)
    net = ddpm.UNet((3, 28, 28), args.width, args.res_blocks, args.patch)
    net.load_state_dict(ck["ema"])
    gen = data.sampling_generator(args.seed, torch.device("cpu"))
    read_fit(ddpm.sample(net.eval(), args.samples, args, gen), path, f"_s{args.sample_steps}_e{args.eta:g}")


def bench(n=200):
    """GAN steps/s at batch 64 (packed D, bf16 autocast), one thread, 30 warm-up steps."""
    device = torch.device("cpu")
    for arch, gw, dw in (("convt", 32, 32), ("convt", 24, 24), ("convt", 16, 16), ("up", 32, 32), ("convt", 16, 32)):
        G, D = make_g(arch, gw), gan.Discriminator((3, 28, 28), dw, True, 2)
        opt_g, opt_d = (torch.optim.Adam(m.parameters(), 2e-4, betas=(0.5, 0.999), fused=True) for m in (G, D))
        real = torch.rand(64, 3, 28, 28) * 2 - 1
        for i in range(n + 30):
            if i == 30:
                t0 = time.time()
            gan_step(G, D, opt_g, opt_d, real, torch.randn(64, gan.LATENT), device)
        print(f"GAN {arch} G{gw}/D{dw}: {n / (time.time() - t0):.1f} steps/s", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["gan-train", "gan-eval", "dm-train", "dm-eval", "bench"])
    p.add_argument("rest", nargs="*", help="OUT for *-train; SNAPSHOT.pt [options] for *-eval")
    a = p.add_argument
    a("--epochs", type=int, default=25); a("--snap", default="")
    a("--lr-g", type=float, default=4e-4); a("--lr-d", type=float, default=4e-4)
    a("--beta1", type=float, default=0.5); a("--beta2", type=float, default=0.999)
    a("--width", type=int, default=32); a("--d-width", type=int, default=0); a("--g-arch", default="convt")
    a("--batch", type=int, default=64); a("--pack", type=int, default=2)
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    o = p.parse_args(argv[:len(argv) - len(extra) - (1 if extra or "--" in argv else 0)])
    o.extra = extra
    torch.set_num_threads(1)
    if o.what.endswith("train"):
        o.out = o.rest[0]
        os.makedirs(o.out, exist_ok=True)
        (gan_train if o.what == "gan-train" else dm_train)(o)
    elif o.what == "gan-eval":
        gan_eval(*o.rest)
    elif o.what == "dm-eval":
        dm_eval(*o.rest)
    else:
        bench()


if __name__ == "__main__":
    main()
