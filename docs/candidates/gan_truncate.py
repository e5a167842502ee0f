"""Sample a GAN checkpoint's EMA with a truncated latent (Brock et al. 2019): z ~ N(0, I) redrawn where |z_i| > psi.
   python docs/candidates/gan_truncate.py CKPT OUT_DIR PSI   (PSI 0 = no truncation)"""
import sys, os, types, numpy as np, torch, gan, data
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
args = types.SimpleNamespace(**ck["config"])
psi = float(sys.argv[3])
G, D = gan.build(args, (3, 28, 28), torch.device("cpu"), torch.Generator().manual_seed(0))
ema = data.EMA(G, args.ema_decay)
ema.load_state_dict(ck["state"]["G_ema"])
gen = data.sampling_generator(args.seed, torch.device("cpu"))
net = gan.standing_stats(ema.net, gen)      # BatchNorm statistics from untruncated latents
def trunc(n):
    z = torch.randn(n, gan.LATENT, generator=gen)
    while psi > 0 and (bad := z.abs() > psi).any():
        z[bad] = torch.randn(int(bad.sum()), generator=gen)
    return z
with torch.inference_mode():
    x = torch.cat([((net(trunc(1000)).float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8) for _ in range(10)]).numpy()
os.makedirs(sys.argv[2], exist_ok=True); np.savez(os.path.join(sys.argv[2], "samples.npz"), x=x)
print("epoch", ck["epoch"], "psi", psi, x.shape)
