"""The study's figures, for results/README.md: Figure 3 (the discriminator's loss on the rare class), the
Table 4 heat map (ours under any reading, beside the paper's with --paper), a Figure-2-like grid of D_r
samples per model, and for any one cell (--cell MODEL/CELL): the per-class chart of P_u and P_r with
95% intervals and the verdict letters (what eq. 1 decides), the training curves of its models, its Figure
3 (GAN, GAN-SD) and its samples labelled with the oracles' calls.

ztest.py computes the z-tables, aggregates the results and hands them down; nothing here imports ztest.
Run it through ztest.py:

    python ztest.py results/quick --paper results/paper/paper-cells.csv --figures results/figures [--runs runs]
    python ztest.py results/quick --figures DIR --cell ddpm/thick-rare1-seed0 [--runs runs]
"""
import csv
import io
import math
import os
import re

import numpy as np
import PIL.Image

import data
import oracles
from study.morphometry import NOUN
from study.paper import our_letter
from study.readings import summary_letter
from study.tables import MNIST_CLASSES, MODEL_ORDER, cell_name, title

LETTER_COLOURS = {"L": "#4daf4a", "M": "#e41a1c", "n": "#cccccc", "b": "#ff9f1c", "u": "#56b4e9", "?": "#984ea3",
                  "-": "#666666", "i": "#ffe066", "x": "#eeeeee"}
SHORT = {"L": "learned", "M": "memorised", "n": "too few samples", "b": "broken baseline", "u": "unfit",
         "?": "other direction", "-": "z undefined", "i": "inconclusive", "x": "no counts for this reading"}
NOT_RUN = {"fc": "#ffffff", "ec": "#999999"}     # a Table 4 cell not run yet: white, grey edge (no letter)
READING_NAMES = {"ours": "our reading (all samples; n and b are never L or M)",
                 "readable": "the readable reading (the samples the label oracle reads with p > 0.9)",
                 "paper": "the paper's reading (L when p > 0.05, else M)",
                 "equivalence": "the equivalence reading (L only when TOST shows |P_r - P_u| < 0.05)",
                 "calibrated": "the calibrated reading (readable samples; the between-seed variance added to the test)",
                 "morphometric": "the morphometric reading (the stroke measured, not the factor oracle; colour: x)",
                 "answer": "the study's answer (colour: the calibrated reading; strokes: the morphometric one)"}
Z95 = 1.959963984540054             # the two-sided 95% normal quantile of the Wilson interval
NOT_LOSSES = ("epoch", "seconds", "lr", "sd_lambda")      # history columns that are not losses
MAX_PNG = 150 * 1024                # results/README.md: every committed figure <= 150 KB
# What each history column of the model scripts holds (vae.neg_elbo, gan.d_loss and g_loss,
# ddpm.diffusion_loss): a curve panel's title and y label. Keyed (model, column); a column that means
# the same in every model is keyed (None, column); a column named nowhere here is drawn under its name.
CURVES = {("VAE", "loss"): ("VAE loss: negative ELBO\n= reconstruction + beta * KL", "negative ELBO (nats per image)"),
          (None, "rec"): ("reconstruction term\n-log p(x | z), Bernoulli per pixel",
                          "reconstruction loss (nats per image)"),
          (None, "kl"): ("KL term\nKL(q(z | x) || N(0, I))", "KL term (nats per image)"),
          (None, "loss_d"): ("D's loss: BCE(D(x), real)\n+ BCE(D(G(z)), fake) [+ SD penalty]",
                             "discriminator loss (nats per image)"),
          (None, "loss_g"): ("G's loss: -log D(G(z))\n(non-saturating)", "generator loss (nats per image)"),
          ("DM", "loss"): ("DM loss: MSE of the eps or v prediction\n(min-SNR weighted unless --snr-gamma 0)",
                           "diffusion loss (MSE per pixel, data in [-1, 1])"),
          (None, "loss"): ("training loss", "training loss (as the model script logs it)")}


def letter_style(letter):
    """How a Table 4 letter is filled in every figure: {"fc", "ec", "hatch"}; None (not run) is NOT_RUN.
    x (no counts for this reading) is hatched so that it is neither n's plain grey nor not run's white.
    A letter with no colour raises ValueError: a new letter must get one here, not fall back to white."""
    if letter is None:
        return {**NOT_RUN, "hatch": None}
    if letter not in LETTER_COLOURS:
        raise ValueError(f"the letter {letter!r} has no colour in study/figures.py (LETTER_COLOURS); "
                         f"accepted: {' '.join(LETTER_COLOURS)}")
    hatch = "////" if letter == "x" else None
    return {"fc": LETTER_COLOURS[letter], "ec": "#999999" if hatch else LETTER_COLOURS[letter], "hatch": hatch}


def factor_values(res):
    """The names of a result's two factor values, (f = 1, f = 0): colour green / red (data.colourise), a
    stroke factor perturbed / plain (morphometry.NOUN: thick, swollen, ...), cars white / black
    (data.load_cars)."""
    if res["dataset"] == "cars":
        return "white", "black"
    if res["factor"] == "colour":
        return "green", "red"
    return NOUN.get(res["factor"], res["factor"]), "plain"


def rare_things(res):
    """The rare class in the plural, for legends: "1s" for MNIST's digit 1, "Volkswagens" for cars."""
    return f"{res['classes'][res['rare']]}s"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path, dpi):
    data.atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi))
    _pyplot().close(fig)


def _save_small(fig, path, dpi, colours=64):
    """Save as a PNG of `colours` colours: images and many labels stay readable and the file small."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _pyplot().close(fig)
    image = PIL.Image.open(buf).convert("RGB").quantize(colors=colours)
    data.atomic_write(path, lambda fh: image.save(fh, format="png", optimize=True))


def plot_disc_loss(res, path):
    """Figure 3 from a GAN result (its "disc_loss": {"u", "r"} -> rows [epoch, factor, loss, sd] of the rare
    class): D's loss w.r.t. the "real" label on the validation images of the rare class, solid with the
    factor and dashed without, each line named by its factor value and class ("D_r model, green 1s"),
    for the models trained on D_u and D_r; the log 2 boundary (logit 0); the SD phase shaded. The legend
    sits below the axes, where it covers no curve."""
    fig, ax = _pyplot().subplots(figsize=(6.4, 4.8))
    things, values = rare_things(res), factor_values(res)
    for w, colour in (("u", "tab:blue"), ("r", "tab:red")):
        for v, style in ((1, "-"), (0, "--")):
            pts = sorted((e, loss) for e, f, loss, _ in res["disc_loss"][w] if f == v)
            if pts:
                ax.plot(*zip(*pts), style, color=colour, label=f"D_{w} model, {values[1 - v]} {things}")
    ax.axhline(math.log(2), color="green", ls=":", label="log 2: D undecided (logit 0)")
    if res.get("sd_epochs"):
        ax.axvspan(0.5, res["sd_epochs"] + 0.5, color="grey", alpha=0.15,
                   label=f"SD phase (lambda {res['config']['sd_lambda']:g})")
    what = "digit" if res["dataset"] == "mnist" else "class"
    ax.set(xlabel="epoch", ylabel='D\'s BCE w.r.t. the "real" label (nats per image)')
    ax.set_title(f'Figure 3: D\'s loss w.r.t. the "real" label\non the rare {what}\'s validation images '
                 f"({values[0]} and {values[1]} {things})\n{cell_title(res)}", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    fig.tight_layout()
    _save(fig, path, 100)


# --------------------------------------------------------------------------- Table 4 as a heat map
def _table4_panel(ax, letters, cols, who):
    """One heat map of Table 4: a square per (rare digit, factor, model) column and digit row, filled by
    letter (letter_style); the model named under its column, the factor and rare digit over each group
    of four."""
    plt, digits = _pyplot(), MNIST_CLASSES + ("Total",)
    for j, (k, f, m) in enumerate(cols):
        for i, d in enumerate(digits):
            letter = letters(k, f, d, m)
            ax.add_patch(plt.Rectangle((j, i), 0.95, 0.95, lw=0.3, **letter_style(letter)))
            if letter and letter not in "LM":
                ax.text(j + 0.47, i + 0.5, letter, ha="center", va="center", fontsize=6)
    ax.set(xlim=(0, len(cols)), ylim=(len(digits), 0))
    ax.set_title(f"Table 4, {who}", fontsize=9, pad=6)
    ax.set_yticks([i + 0.5 for i in range(len(digits))], ["all" if d == "Total" else d for d in digits], fontsize=7)
    ax.set_ylabel("digit (all: every digit)", fontsize=7)
    ax.set_xticks([j + 0.47 for j in range(len(cols))], [m for _, _, m in cols], rotation=90, fontsize=6)
    ax.set_xlabel("model", fontsize=7, labelpad=1)
    groups = ax.secondary_xaxis("top")
    groups.set_xticks([j * 4 + 2 for j in range(10)], [f"{f} (k={k})" for k in (1, 2) for f in data.FACTORS],
                      fontsize=7)
    groups.set_xlabel("factor (k: the rare digit, the only one that carries it in D_r)", fontsize=7, labelpad=2)
    groups.tick_params(length=0)
    for j in range(1, 10):
        ax.axvline(j * 4 - 0.025, color="black", lw=0.8)
    ax.tick_params(length=0)


def plot_table4(agg, paper, path, summary="ours"):
    """A heat map of Table 4 under the `summary` reading (agg: the results aggregated under it), seed 0:
    ours alone, or below the paper's letters with `paper`; filled by letter (letter_style), one legend
    entry per letter and one for the cells not run (white, grey edge)."""
    plt = _pyplot()
    cols = [(k, f, m) for k in (1, 2) for f in data.FACTORS for m in MODEL_ORDER]
    panels = ([("the paper", lambda k, f, d, m: paper[(k, f, d, m)]["letter"])] if paper is not None else []) \
        + [("ours", lambda k, f, d, m: our_letter(agg, k, f, d, m))]
    height = 1.3 + 3.6 * len(panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, height), squeeze=False)
    for ax, (who, letters) in zip(axes[:, 0], panels):
        _table4_panel(ax, letters, cols, who)
    keys = list(LETTER_COLOURS) + [None]
    fig.legend([plt.Rectangle((0, 0), 1, 1, lw=0.5, **letter_style(k)) for k in keys],
               [f"{k}: {SHORT[k]}" if k else "not run" for k in keys], loc="lower center", ncol=5, fontsize=7,
               frameon=False)
    fig.suptitle(f"Table 4 under {READING_NAMES.get(summary, summary)}; seed 0", fontsize=9)
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1))        # the legend's two rows: 0.45 inch
    _save_small(fig, path, 100, colours=256)     # a palette PNG: the hatched x squares stay under MAX_PNG


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
        ax.set_title(f"{m}: D_r model", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"D_r samples, {factor}, rare digit {rare}, seed {seed}\neach panel the model's first {n * n} "
                 f"samples, {n} per row in the order drawn (rows and columns are not digits)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.9))          # room for the two-line suptitle, which tight_layout ignores
    _save_small(fig, path, 90)     # 64 colours: small enough to commit (README: figures <= 150 KB)
    return [m for m, _ in found]


# --------------------------------------------------------------------------- one cell (--cell MODEL/CELL)
def wilson(k, n, z=Z95):
    """The Wilson score interval of the proportion k / n (Wilson 1927), 95% with the default z: (lo, hi),
    (nan, nan) when n = 0. Unlike the normal (Wald) interval it stays inside [0, 1] and is not empty at
    k = 0 or k = n, where a cell's P_u or P_r often sits."""
    if n == 0:
        return math.nan, math.nan
    p, zz = k / n, z * z
    centre = (p + zz / (2 * n)) / (1 + zz / n)
    half = z / (1 + zz / n) * math.sqrt(p * (1 - p) / n + zz / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _pupr_panel(ax, rows, sfx, letters, res):
    """One panel of plot_pupr: per class, and "all" set apart, P_u and P_r as bars with their 95% Wilson
    intervals, the verdict letter above (filled as in Table 4); the rare class shaded; res: the result.
    Returns what it drew, read back from the artists: {"P_u", "P_r": bar heights, "ci_u", "ci_r": [(lo,
    hi)] per bar, "letters"}."""
    x = np.arange(len(rows)) + 0.5 * (np.arange(len(rows)) == len(rows) - 1)
    rare, value = res["rare"], factor_values(res)[0]
    ax.axvspan(rare - 0.5, rare + 0.5, color="gold", alpha=0.25, lw=0)
    drawn = {}
    for w, dx, colour, who in (("u", -0.2, "tab:blue", "D_u"), ("r", 0.2, "tab:red", "D_r")):
        p = np.array([r[f"P_{w}{sfx}"] for r in rows], dtype=float)
        ci = np.array([wilson(r[f"k_{w}{sfx}"], r[f"n_{w}{sfx}"]) for r in rows], dtype=float)
        err = np.clip(np.nan_to_num([p - ci[:, 0], ci[:, 1] - p]), 0, None)     # n = 0: no bar, no interval
        bars = ax.bar(x + dx, np.nan_to_num(p), 0.4, yerr=err, color=colour,
                      capsize=2, error_kw={"lw": 0.8}, label=f"P_{w}: share {value}, {who} model's samples")
        drawn[f"P_{w}"] = [b.get_height() for b in bars]
        drawn[f"ci_{w}"] = [(s[0][1], s[1][1]) for s in bars.errorbar.lines[2][0].get_segments()]
    for xi, letter in zip(x, letters):
        ax.text(xi, 1.04, letter, ha="center", va="bottom", fontsize=8, fontweight="bold",
                bbox={"boxstyle": "round,pad=0.2", **letter_style(letter)})
    drawn["letters"] = [t.get_text() for t in ax.texts]
    names = [("all" if r["name"] == "Total" else str(r["name"])) + ("\n(rare)" if r["class"] == rare else "")
             for r in rows]
    ax.set_xticks(x, names, fontsize=8)
    what = "digit" if res["dataset"] == "mnist" else "class"
    ax.set(xlim=(-0.6, x[-1] + 0.6), ylim=(0, 1.16))
    ax.set_xlabel(f"{what} (the label oracle's call; all: every {what})", fontsize=8)
    ax.set_ylabel(f"share of the {what}'s samples called {value} (f = 1)", fontsize=8)
    return drawn


def plot_pupr(res, rows, path, reading):
    """The one picture of what eq. 1 decides, for one cell: per class, P_u and P_r (the share of the D_u /
    D_r model's samples of that class that carry the factor) with 95% Wilson score intervals (wilson; an
    interval of each proportion on its own n, not eq. 1's test) and the Table 4 letter above each class.
    Two panels: all samples, lettered by the reading's --summary rule (ours when it is readable), and,
    when the result holds its counts, the readable reading (the samples the label oracle reads with
    p > reading.confidence), lettered by its own rule. rows: the result's z-table (ztest.result_rows).
    Returns {"all": drawn, "readable": drawn} (see _pupr_panel)."""
    how = "ours" if reading.summary == "readable" else reading.summary
    panels = [("all", "", [summary_letter(r, how, reading.alpha, reading.min_n) for r in rows],
               f"all samples; letters: {READING_NAMES[how]}")]
    if "verdict_read" in rows[0]:
        panels.append(("readable", "_read", [r["verdict_read"] for r in rows],
                       f"the readable reading: samples the label oracle reads with p > {reading.confidence:g}"))
    fig, axes = _pyplot().subplots(len(panels), 1, figsize=(8, 0.9 + 3.4 * len(panels)), squeeze=False)
    drawn = {}
    for ax, (name, sfx, letters, heading) in zip(axes[:, 0], panels):
        drawn[name] = _pupr_panel(ax, rows, sfx, letters, res)
        ax.set_title(heading, fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.12), ncol=2, frameon=False)
    shown = sorted({t for _, _, letters, _ in panels for t in letters}, key=list(LETTER_COLOURS).index)
    fig.text(0.5, 0.005, "letters (Table 4): " + "; ".join(f"{t} {SHORT[t]}" for t in shown), ha="center",
             va="bottom", fontsize=7)
    fig.suptitle(f"P_u and P_r per class (eq. 1), 95% Wilson intervals: {cell_title(res)}", fontsize=9)
    fig.tight_layout(rect=(0, 0.025, 1, 1))
    _save(fig, path, 90)
    return drawn


def cell_title(res):
    """A cell's name for its figures: model, factor, rare digit (rare class for cars), skew and seed."""
    return title(res).replace("rare class", "rare digit") if res["dataset"] == "mnist" else title(res)


def run_folders(res, runs_dir):
    """The cell's D_u and D_r run folders under runs_dir: runs_dir/MODEL/CELL and its D_u folder, named by
    the result's "dirs" (absolute in older results, relative to the D_r folder in newer ones)."""
    model, name = cell_name(res)
    u = os.path.basename(os.path.normpath(res.get("dirs", {}).get("u") or "")) or \
        re.sub(r"-rare\d+(-pin[^-]+-pout[^-]+)?", "-balanced", name)
    return {"u": os.path.join(runs_dir, model, u), "r": os.path.join(runs_dir, model, name)}


def _read_history(path):
    """A run folder's history.csv as one {column: float} per epoch; [] when there is none."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        try:
            out.append({k: float(v) for k, v in row.items() if v not in ("", None)})
        except ValueError as e:
            raise ValueError(f"{path}: not a history (one number per column): {e}") from None
    return out


def histories(res, folders=None):
    """A cell's training histories {"u": rows, "r": rows}: the run folders' history.csv when `folders`
    (run_folders) are given, else the result's "history" (a run with --stage r holds only D_r's)."""
    if folders:
        return {w: _read_history(os.path.join(folders[w], "history.csv")) for w in ("u", "r")}
    return {w: list(res.get("history", {}).get(w) or []) for w in ("u", "r")}


def plot_curves(hist, path, heading, model=None):
    """Training curves of a cell's models: one panel per loss column of their history (a val_ column
    dashed in its training column's panel; epoch, seconds, lr and sd_lambda are not losses), the D_u
    model blue and the D_r model red; each panel titled and its y axis labelled by CURVES for `model`
    (res["model"]: VAE, GAN, GAN-SD, DM). Returns {panel: {line label: [(epoch, value)]}} as drawn."""
    cols = sorted({k for rows in hist.values() for row in rows for k in row if k not in NOT_LOSSES})
    panels = [c for c in cols if not (c.startswith("val_") and c[4:] in cols)]
    if not panels:
        raise ValueError(f"no training history to draw for {heading}")
    fig, axes = _pyplot().subplots(1, len(panels), figsize=(max(6.0, 0.6 + 3.2 * len(panels)), 3.6), squeeze=False)
    drawn = {}
    for ax, col in zip(axes[0], panels):
        for w, colour in (("u", "tab:blue"), ("r", "tab:red")):
            for c, style, what in ((col, "-", ""), ("val_" + col, "--", ", validation")):
                pts = [(row["epoch"], row[c]) for row in hist.get(w, []) if c in row]
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", ms=3, color=colour, label=f"D_{w} model{what}")
                    drawn.setdefault(col, {})[f"D_{w} model{what}"] = pts
        name, unit = CURVES.get((model, col)) or CURVES.get((None, col)) or (col, col)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
        ax.legend(fontsize=7)
    missing = [f"D_{w}" for w in ("u", "r") if not hist.get(w)]
    fig.suptitle(f"training curves: {heading}" + (f"\nno history of the {' and '.join(missing)} model here (trained "
                 "in another call; --runs reads the run folders' history.csv)" if missing else ""), fontsize=8)
    fig.tight_layout()
    _save(fig, path, 90)
    return drawn


def plot_labelled_samples(res, folders, orc, path, n=8):
    """The first n x n samples of the cell's D_u and D_r models (samples.npz of each run folder), each
    labelled with the label oracle's class and starred where the factor oracle calls f = 1: the calls
    that eq. 1 counts. Returns {"u"/"r": (labels, factors)} of the samples drawn."""
    plt = _pyplot()
    found = [(w, os.path.join(folders[w], "samples.npz")) for w in ("u", "r")]
    found = [(w, p) for w, p in found if os.path.exists(p)]
    fig, axes = plt.subplots(1, len(found), figsize=(3.6 * len(found), 4), squeeze=False)
    calls = {}
    for ax, (w, p) in zip(axes[0], found):
        with np.load(p) as z:
            x = z["x"][: n * n]
        y, f = oracles.classify(orc, x)
        calls[w] = (y.tolist(), f.tolist())
        s, rows = x.shape[-1], -(-len(x) // n)
        x = np.concatenate([x, np.zeros((rows * n - len(x),) + x.shape[1:], np.uint8)])
        ax.imshow(x.reshape(rows, n, 3, s, s).transpose(0, 3, 1, 4, 2).reshape(rows * s, n * s, 3),
                  interpolation="nearest")
        for i, (yi, fi) in enumerate(zip(y, f)):
            ax.text((i % n) * s + 1, (i // n) * s + 1, str(res["classes"][yi])[:3] + ("*" if fi else ""),
                    color="white", fontsize=5, va="top", ha="left", bbox={"fc": "black", "alpha": 0.5, "pad": 0.4,
                                                                        "ec": "none"})
        ax.set_title(f"D_{w} model's first {len(y)} samples", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{cell_title(res)}\nthe label oracle's class on each sample; *: the {res['factor']} oracle calls "
                 f"f = 1, {factor_values(res)[0]} ({res.get('oracle_recipe', 'paper')} oracles)\n{n} samples per row "
                 "in the order drawn (rows and columns are not digits)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.9))          # room for the three-line suptitle, which tight_layout ignores
    _save_small(fig, path, 110)
    return calls


def cell(res, rows, args, reading):
    """--figures DIR --cell MODEL/CELL: one cell's figures from its result.json, with no training. rows:
    its z-table under the reading (ztest.result_rows). Writes in DIR pupr-MODEL-CELL.png (plot_pupr),
    curves-MODEL-CELL.png (plot_curves; from history.csv with --runs), figure3-MODEL-CELL.png for a GAN
    or GAN-SD cell (Figure 3), and with --runs samples-MODEL-CELL.png, labelled by the oracles of the
    result's recipe. A --runs without the cell's samples raises ValueError before anything is written.
    Prints and returns the paths written."""
    model, name = cell_name(res)
    folders = run_folders(res, args.runs) if args.runs else None
    if folders and not os.path.exists(os.path.join(folders["r"], "samples.npz")):
        raise ValueError(f"--runs {args.runs}: no samples of the cell {model}/{name} there (no "
                         f"{os.path.join(folders['r'], 'samples.npz')}); accepted: the --runs folder of its run")
    orc = None if not folders else oracles.load_oracles(     # read every input before writing anything
        res["factor"], res["dataset"], root=args.data_root, cache_dir=args.cache_dir, data_seed=res.get("data_seed", 0),
        device=data.pick_device(args.device, announce=False), smoke=bool(res.get("oracle_smoke")),
        recipe_name=res.get("oracle_recipe", "paper"))
    out = lambda kind: os.path.join(args.figures, f"{kind}-{model}-{name}.png")     # noqa: E731
    plot_pupr(res, rows, out("pupr"), reading)
    written = [out("pupr")]
    if any(histories(res, folders).values()):
        plot_curves(histories(res, folders), out("curves"), cell_title(res), res["model"])
        written.append(out("curves"))
    if res.get("disc_loss"):            # Figure 3: the GAN and the GAN-SD record D's loss per epoch
        plot_disc_loss(res, out("figure3"))
        written.append(out("figure3"))
    if folders:
        plot_labelled_samples(res, folders, orc, out("samples"))
        written.append(out("samples"))
    for path in written:
        print(f"wrote {path}")
    return written


def figures(results, out_dir, agg=None, paper=None, runs_dir=None, summary="ours"):
    """The study's figures from its result files: Figure 3 of the GAN and the GAN-SD (colour, rare 1, seed
    0), the Table 4 heat map of agg (the results aggregated under the `summary` reading), beside the
    paper's with `paper`, and, when `runs_dir` holds the samples, a Figure-2-like grid of D_r samples per
    model. Prints and returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for res in results:
        if res["model"] in ("GAN", "GAN-SD") and res.get("disc_loss") and (res["factor"], res["rare"], res["seed"],
                                                                            res["dataset"]) == ("colour", 1, 0, "mnist"):
            path = os.path.join(out_dir, f"figure3-{res['run_name']}-colour-rare1.png")
            plot_disc_loss(res, path)
            written.append(path)
    if agg is not None:     # without the paper's cells: table4-<summary>-alone.png, ours only
        path = os.path.join(out_dir, f"table4-{summary}{'' if paper is not None else '-alone'}.png")
        plot_table4(agg, paper, path, summary)
        written.append(path)
    if runs_dir:
        path = os.path.join(out_dir, "samples-colour-rare1.png")
        models = [("VAE", "vae"), ("GAN", "gan"), ("GAN-SD", "gan-sd"), ("DM", "ddpm")]
        if plot_samples(runs_dir, models, "colour", 1, 0, path):
            written.append(path)
    for path in written:
        print(f"wrote {path}")
    return written


def add_option(p):
    """ztest.py's --figures (its --runs and --cell pick the samples and the cell)."""
    p.add_argument("--figures", help="write the figures here: Figure 3 (GAN, GAN-SD), the Table 4 heat map "
                   "(beside the paper's with --paper), with --runs a grid of D_r samples per model; with --cell "
                   "MODEL/CELL that cell's P_u/P_r chart, training curves, Figure 3 and, with --runs, its samples "
                   "labelled by the oracles (study/figures.py; default: none)")
