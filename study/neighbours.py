"""Nearest neighbours: does a D_r model memorise the rare *factor* or whole training *images*?

An M verdict says the D_r model keeps the factor on the rare digit. It does not say how: a model can draw
new thick 1s (it memorised the factor, as part of what a 1 is), or copy thick 1s from its training set (it
memorised images). This check tells the two apart. For the D_r samples of the rare digit and of one other
digit (those the label oracle reads with p > 0.9), the distance to the nearest training image of the same
class is compared with the same distance between training images: each of n training images against every
other one of its class (leave one out). A model that copies sits far below that line (its samples are
closer to a training image than training images are to each other); a model that draws new digits sits
on it or above. Both in pixels (L2 on [0, 1] images) and in the label oracle's features (its 64
penultimate units, oracles.features), where a copy that moved by a pixel still reads as a copy.

    python -m study.neighbours runs/gan/thick-rare1-seed0               # the D_r run folder (its result.json)
    python -m study.neighbours RUN --digits 1,7 --n 500 --out-dir results/neighbours
    python -m study.neighbours runs/{vae,gan,ddpm}/colour-rare1-seed0 --panel nn-colour.png   # several runs

It writes neighbours-<run>-<cell>.json (the statistics) and .png (samples beside their nearest training
images) to --out-dir, and prints one line per digit and space; --panel draws the rare digit of every run
given in one figure. docs/readings.md, "Nearest neighbours".
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

COPY_QUANTILE = 0.05     # a sample is "as close as a copy" when nearer than 95% of training images are to theirs
CONFIDENT = 0.9          # the samples read: the label oracle's p > 0.9, as the readable reading


def nearest(query, ref, exclude_self=False, chunk=256):
    """(distance float64 [Q], index int64 [Q]): each query row's nearest row of ref by Euclidean distance;
    with exclude_self, query row i is ref row i and is skipped (leave one out). Rows are flattened."""
    q = torch.as_tensor(np.asarray(query, dtype=np.float32).reshape(len(query), -1))
    r = torch.as_tensor(np.asarray(ref, dtype=np.float32).reshape(len(ref), -1))
    dist, idx = [], []
    for i in range(0, len(q), chunk):
        d = torch.cdist(q[i:i + chunk].double(), r.double())
        if exclude_self:
            rows = torch.arange(i, min(i + chunk, len(q)))
            d[rows - i, rows] = float("inf")
        m = d.min(1)
        dist.append(m.values)
        idx.append(m.indices)
    return torch.cat(dist).numpy(), torch.cat(idx).numpy()


def compare(samples, train, n, rng):
    """The statistics of one digit in one space: samples [S, ...] and the class's training images or
    features [T, ...]. Up to n of each are used (rng picks which). Returns {"n_samples", "n_train",
    "sample_nn" and "train_nn" (median, 5th and 95th percentile of the nearest-neighbour distance),
    "ratio" (median sample_nn / median train_nn: < 1 closer than training images are to each other),
    "copies" (the share of samples nearer than COPY_QUANTILE of the training images are to theirs; about
    0.05 for a model that draws like the data), "index" (each used sample's nearest training image),
    "used" (the samples used)}."""
    if len(samples) == 0 or len(train) < 2:
        raise ValueError(f"needs samples and at least 2 training images (got {len(samples)} and {len(train)})")
    used = np.sort(rng.choice(len(samples), min(n, len(samples)), replace=False))
    probe = np.sort(rng.choice(len(train), min(n, len(train)), replace=False))
    d_s, i_s = nearest(samples[used], train)
    d_t, _ = nearest(train[probe], np.concatenate([train[probe], np.delete(train, probe, 0)]), exclude_self=True)
    stats = lambda d: {"median": float(np.median(d)), "p5": float(np.quantile(d, 0.05)),
                       "p95": float(np.quantile(d, 0.95))}
    cut = np.quantile(d_t, COPY_QUANTILE)
    return {"n_samples": int(len(used)), "n_train": int(len(train)), "sample_nn": stats(d_s), "train_nn": stats(d_t),
            "ratio": float(np.median(d_s) / np.median(d_t)) if np.median(d_t) > 0 else float("nan"),
            "copies": float(np.mean(d_s < cut)), "index": i_s.tolist(), "used": used.tolist()}


def other_digit(labels, rare, n_classes=10):
    """The digit the check reads beside the rare one: the other class the model drew most often."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes)
    counts[rare] = -1
    return int(np.argmax(counts))


def check(run_dir, digits=None, n=500, root=None, cache_dir=None, device="cpu", seed=0):
    """The check of one D_r run folder (its result.json and samples.npz): {"cell", "digits": {digit:
    {"pixels": compare(...), "features": compare(...)}}, "n", "seed"}, plus the images of the figure."""
    import data
    import oracles
    from study import tables
    res = tables.read_result(os.path.join(run_dir, "result.json"))
    path = os.path.join(run_dir, "samples.npz")
    if not os.path.isfile(path):
        raise ValueError(f"{run_dir}: no samples.npz (the D_r model's samples); accepted: a D_r run folder "
                         f"with its result.json and samples.npz")
    samples = np.load(path)["x"]
    cfg = res.get("config", {})
    x, y, _ = data.make_dataset(res["factor"], "train", rare=res["rare"], p_in=res.get("p_in", 1.0),
                                p_out=res.get("p_out", 0.0), seed=res.get("data_seed", 0), root=root,
                                cache_dir=cache_dir, limit=cfg.get("subset") or None)
    orc = oracles.load_oracles(res["factor"], res.get("dataset", "mnist"), root=root, cache_dir=cache_dir,
                               device=data.pick_device(device), data_seed=res.get("data_seed", 0),
                               smoke=bool(res.get("oracle_smoke")), recipe_name=res.get("oracle_recipe", "robust"))
    p_label, _ = oracles.predict_proba(orc, samples)
    label, sure = p_label.argmax(1), p_label.max(1) > CONFIDENT
    digits = digits or [res["rare"], other_digit(label[sure], res["rare"], p_label.shape[1])]
    rng = np.random.default_rng(seed)
    out, shown = {}, {}
    for c in digits:
        s, t = samples[sure & (label == c)], x[y == c]
        px = compare(s / 255.0, t / 255.0, n, rng)
        ft = compare(oracles.features(orc, s), oracles.features(orc, t), n, rng)
        out[int(c)] = {"pixels": {k: v for k, v in px.items() if k not in ("index", "used")},
                       "features": {k: v for k, v in ft.items() if k not in ("index", "used")}}
        pick = px["used"][:8]
        shown[int(c)] = (s[pick], t[np.asarray(px["index"][:8], dtype=int)])
    cell = f"{res.get('run_name', res['model'])}/{os.path.basename(os.path.abspath(run_dir))}"
    return {"cell": cell, "factor": res["factor"], "rare": res["rare"], "digits": out, "n": n, "seed": seed,
            "copy_quantile": COPY_QUANTILE}, shown


def figure(report, shown, path):
    """Samples (top row of each pair) above their nearest training image in pixels (bottom row)."""
    from study import figures
    plt = figures._pyplot()
    rows = [(c, w) for c in shown for w in (0, 1)]
    fig, axes = plt.subplots(len(rows), 8, figsize=(8 * 0.9, len(rows) * 0.95 + 0.6), squeeze=False)
    for r, (c, w) in enumerate(rows):
        imgs = shown[c][w]
        for j in range(8):
            ax = axes[r][j]
            ax.set_xticks([]); ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(np.transpose(imgs[j], (1, 2, 0)))
        px = report["digits"][c]["pixels"]
        axes[r][0].set_ylabel(f"{c}: sample" if w == 0 else f"nearest\ntraining {c}", fontsize=7)
        if w == 0:
            axes[r][7].set_title(f"ratio {px['ratio']:.2f}, copies {px['copies']:.0%}", fontsize=7, loc="right")
    fig.suptitle(f"{report['cell']}: D_r samples above their nearest training image (pixels)", fontsize=8)
    figures._save(fig, path, 100)


def panel(checks, path, k=8):
    """Several runs' rare digit in one figure: per run, k samples above their nearest training image in
    pixels, titled with the rare digit's and the other digit's ratios (checks: [(report, shown)])."""
    from study import figures
    plt = figures._pyplot()
    fig, axes = plt.subplots(2 * len(checks), k, figsize=(k * 0.8, len(checks) * 1.75 + 0.5), squeeze=False)
    for i, (report, shown) in enumerate(checks):
        rare = report["rare"]
        for w in (0, 1):
            imgs = shown[rare][w]
            for j in range(k):
                ax = axes[2 * i + w][j]
                ax.set_xticks([]); ax.set_yticks([])
                if j < len(imgs):
                    ax.imshow(np.transpose(imgs[j], (1, 2, 0)))
        axes[2 * i][0].set_ylabel("sample", fontsize=7)
        axes[2 * i + 1][0].set_ylabel("nearest", fontsize=7)
        ratios = ", ".join(f"{c}s {d['pixels']['ratio']:.2f} / {d['features']['ratio']:.2f}"
                           for c, d in report["digits"].items())
        axes[2 * i][0].set_title(f"{report['cell']}: ratio (pixels / features) {ratios}", fontsize=7, loc="left")
    fig.suptitle("D_r samples of the rare digit above their nearest training image (pixels)", fontsize=8)
    figures._save_small(fig, path, 80)


def render(report):
    """One line per digit and space."""
    lines = []
    for c, d in report["digits"].items():
        for space, s in d.items():
            lines.append(f"{report['cell']} digit {c} {space:8s}: sample-to-nearest-training median "
                         f"{s['sample_nn']['median']:.3g}, training-to-training {s['train_nn']['median']:.3g}, "
                         f"ratio {s['ratio']:.2f}, copies {s['copies']:.1%} ({s['n_samples']} samples)")
    return "\n".join(lines)


def main(argv=None):
    import data
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.error = data.fail                                      # one line, exit 2
    p.add_argument("run", nargs="+", help="D_r run folders, each holding result.json and samples.npz")
    p.add_argument("--digits", default=None, help="comma-separated digits (default: the rare one and the "
                   "other the model drew most)")
    p.add_argument("--n", type=int, default=500, help="samples and training images per digit (default: 500)")
    p.add_argument("--out-dir", default=None, help="write each run's JSON and figure here (default: print only)")
    p.add_argument("--panel", default=None, help="also draw every run's rare digit in one figure, this PNG "
                   "(default: none)")
    p.add_argument("--seed", type=int, default=0, help="which samples and training images are used (default: 0)")
    p.add_argument("--device", default="auto", help="the oracles' device (default: auto)")
    p.add_argument("--data-root", default=None, help="folder holding MNIST/raw (default: $RGF_DATA_ROOT)")
    p.add_argument("--cache-dir", default=None, help="rendering and oracle cache (default: $RGF_CACHE_DIR)")
    a = p.parse_args(argv)
    data.check_paths(a, folders=("out_dir", "cache_dir"), inputs=("data_root",))
    try:
        digits = [int(d) for d in a.digits.split(",")] if a.digits else None
    except ValueError:
        p.error(f"--digits {a.digits!r}: accepted: comma-separated digits 0..9, e.g. 1,7")
    if digits and not all(0 <= d <= 9 for d in digits) or a.n < 10:
        p.error(f"--digits {a.digits} / --n {a.n}: accepted: digits 0..9 and --n >= 10")
    if a.panel and not a.panel.endswith(".png"):
        p.error(f"--panel {a.panel}: accepted: a path ending in .png")
    for run in a.run:
        if not os.path.isdir(run):
            p.error(f"{run}: no such folder; accepted: a D_r run folder holding result.json and samples.npz")
    checks = []
    for run in a.run:
        try:
            report, shown = check(run, digits, a.n, a.data_root, a.cache_dir, a.device, a.seed)
        except (ValueError, FileNotFoundError) as e:
            data.fail(str(e))
        checks.append((report, shown))
        print(render(report))
        if a.out_dir:
            name = "neighbours-" + report["cell"].replace("/", "-")
            data.atomic_write(os.path.join(a.out_dir, name + ".json"),
                              lambda fh: fh.write(json.dumps(report, indent=1) + "\n"), mode="w")
            figure(report, shown, os.path.join(a.out_dir, name + ".png"))
            print(f"wrote {os.path.join(a.out_dir, name)}.json and .png")
    if a.panel:
        panel(checks, a.panel)
        print(f"wrote {a.panel}")
    return [r for r, _ in checks]


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
