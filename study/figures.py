"""The study's figures, for results/README.md: Figure 3 (the discriminator's loss on the rare class), the
Table 4 heat map beside the paper's, and a Figure-2-like grid of D_r samples per model.

ztest.py aggregates the results and hands them down; nothing here imports ztest. Run it through ztest.py:

    python ztest.py results/quick --paper results/paper/paper-cells.csv --figures results/figures [--runs runs]
"""
import io
import math
import os

import numpy as np
import PIL.Image

import data
from study.paper import our_letter
from study.tables import MNIST_CLASSES, MODEL_ORDER, title

LETTER_COLOURS = {"L": "#4daf4a", "M": "#e41a1c", "n": "#cccccc", "b": "#ff9f1c", "?": "#984ea3", "-": "#666666",
                  "i": "#ffe066", "x": "#ffffff"}
SHORT = {"L": "learned", "M": "memorised", "n": "too few samples", "b": "broken baseline", "?": "other direction",
         "-": "z undefined", "i": "inconclusive", "x": "no readable counts"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path, dpi):
    data.atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi))
    _pyplot().close(fig)


def plot_disc_loss(res, path):
    """Figure 3 from a GAN result (its "disc_loss": {"u", "r"} -> rows [epoch, factor, loss, sd] of the rare
    class): D's loss w.r.t. the "real" label on the validation digits of the rare class, solid with the
    factor and dashed without, for the models trained on D_u and D_r; the log 2 boundary (logit 0); the
    SD phase shaded."""
    fig, ax = _pyplot().subplots(figsize=(6.4, 4))
    for w, colour in (("u", "tab:blue"), ("r", "tab:red")):
        for v, style, what in ((1, "-", "with"), (0, "--", "without")):
            pts = sorted((e, loss) for e, f, loss, _ in res["disc_loss"][w] if f == v)
            if pts:
                ax.plot(*zip(*pts), style, color=colour, label=f"D_{w}, {what} the factor")
    ax.axhline(math.log(2), color="green", ls=":", label="log 2 (logit 0)")
    if res.get("sd_epochs"):
        ax.axvspan(0.5, res["sd_epochs"] + 0.5, color="grey", alpha=0.15,
                   label=f"SD phase (lambda {res['config']['sd_lambda']:g})")
    ax.set(xlabel="epoch", ylabel='D loss w.r.t. the "real" label (validation)', title=title(res))
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, 100)


def plot_table4(agg, paper, path, heading):
    """A heat map of Table 4: one square per (rare digit, factor, model) column and digit row, the paper's
    letters above ours (seed 0), coloured by letter (LETTER_COLOURS); white: not run."""
    plt = _pyplot()
    cols = [(k, f, m) for k in (1, 2) for f in data.FACTORS for m in MODEL_ORDER]
    digits = MNIST_CLASSES + ("Total",)
    fig, axes = plt.subplots(2, 1, figsize=(11, 5.6))
    for ax, who in zip(axes, ("the paper", "ours")):
        for j, (k, f, m) in enumerate(cols):
            for i, d in enumerate(digits):
                letter = paper[(k, f, d, m)]["letter"] if who == "the paper" else our_letter(agg, k, f, d, m)
                ax.add_patch(plt.Rectangle((j, i), 0.95, 0.95, color=LETTER_COLOURS.get(letter or "x", "#ffffff"),
                                           ec="#999999" if letter is None else None, lw=0.3))
                if letter and letter not in "LM":
                    ax.text(j + 0.47, i + 0.5, letter, ha="center", va="center", fontsize=6)
        ax.set(xlim=(0, len(cols)), ylim=(len(digits), 0), title=f"Table 4, {who}")
        ax.set_yticks([i + 0.5 for i in range(len(digits))], ["all" if d == "Total" else d for d in digits], fontsize=7)
        ax.set_xticks([j * 4 + 2 for j in range(10)], [f"{f} (k={k})" for k in (1, 2) for f in data.FACTORS], fontsize=7)
        for j in range(1, 10):
            ax.axvline(j * 4 - 0.025, color="black", lw=0.8)
        ax.tick_params(length=0)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in LETTER_COLOURS.values()]
    fig.legend(handles + [plt.Rectangle((0, 0), 1, 1, fc="white", ec="#999999")],
               [f"{k}: {SHORT[k]}" for k in LETTER_COLOURS] + ["not run"], loc="lower center", ncol=9, fontsize=7,
               frameon=False)
    fig.suptitle(f"{heading}; each group of 4 columns: {' / '.join(MODEL_ORDER)}", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, path, 80)


def plot_samples(runs_dir, models, factor, rare, seed, path, n=8):
    """A Figure-2-like grid: the first n x n D_r samples of each model (samples.npz under runs_dir, which
    is never committed), one panel per model. Returns the models drawn."""
    plt = _pyplot()
    found = [(m, os.path.join(runs_dir, run, f"{factor}-rare{rare}-seed{seed}", "samples.npz")) for m, run in models]
    found = [(m, p) for m, p in found if os.path.exists(p)]
    if not found:
        return []
    fig, axes = plt.subplots(1, len(found), figsize=(2.6 * len(found), 2.9), squeeze=False)
    for ax, (m, p) in zip(axes[0], found):
        with np.load(p) as z:
            x = z["x"][: n * n]
        grid = x.reshape(n, n, 3, 28, 28).transpose(0, 3, 1, 4, 2).reshape(n * 28, n * 28, 3)
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(m, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"D_r samples, {factor}, rare digit {rare}, seed {seed}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    # 64 colours: the grid stays readable and the file small enough to commit (README: figures <= 150 KB)
    image = PIL.Image.open(buf).convert("RGB").quantize(colors=64)
    data.atomic_write(path, lambda fh: image.save(fh, format="png", optimize=True))
    return [m for m, _ in found]


def figures(results, out_dir, agg=None, paper=None, runs_dir=None, summary="ours"):
    """The study's figures from its result files: Figure 3 of the GAN and the GAN-SD (colour, rare 1, seed
    0), the Table 4 heat map of agg (the results aggregated under the `summary` reading) beside the
    paper's (with `paper`), and, when `runs_dir` holds the samples, a Figure-2-like grid of D_r samples
    per model. Returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for res in results:
        if res["model"] in ("GAN", "GAN-SD") and res.get("disc_loss") and (res["factor"], res["rare"], res["seed"],
                                                                            res["dataset"]) == ("colour", 1, 0, "mnist"):
            path = os.path.join(out_dir, f"figure3-{res['run_name']}-colour-rare1.png")
            plot_disc_loss(res, path)
            written.append(path)
    if paper is not None:
        path = os.path.join(out_dir, f"table4-{summary}.png")
        plot_table4(agg, paper, path, f"Table 4 under the {summary} reading")
        written.append(path)
    if runs_dir:
        path = os.path.join(out_dir, "samples-colour-rare1.png")
        models = [("VAE", "vae"), ("GAN", "gan"), ("GAN-SD", "gan-sd"), ("DM", "ddpm")]
        if plot_samples(runs_dir, models, "colour", 1, 0, path):
            written.append(path)
    return written
