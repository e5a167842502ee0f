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
from study.paper import our_letter
from study.readings import summary_letter
from study.tables import MNIST_CLASSES, MODEL_ORDER, cell_name, title

LETTER_COLOURS = {"L": "#4daf4a", "M": "#e41a1c", "n": "#cccccc", "b": "#ff9f1c", "?": "#984ea3", "-": "#666666",
                  "i": "#ffe066", "x": "#ffffff"}
SHORT = {"L": "learned", "M": "memorised", "n": "too few samples", "b": "broken baseline", "?": "other direction",
         "-": "z undefined", "i": "inconclusive", "x": "no readable counts"}
READING_NAMES = {"ours": "our reading (all samples; n and b are never L or M)",
                 "readable": "the readable reading (the samples the label oracle reads with p > 0.9)",
                 "paper": "the paper's reading (L when p > 0.05, else M)",
                 "equivalence": "the equivalence reading (L only when TOST shows |P_r - P_u| < 0.05)"}
Z95 = 1.959963984540054             # the two-sided 95% normal quantile of the Wilson interval
NOT_LOSSES = ("epoch", "seconds", "lr", "sd_lambda")      # history columns that are not losses
MAX_PNG = 150 * 1024                # results/README.md: every committed figure <= 150 KB


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
    class): D's loss w.r.t. the "real" label on the validation digits of the rare class, solid with the
    factor and dashed without, for the models trained on D_u and D_r; the log 2 boundary (logit 0); the
    SD phase shaded. The legend sits below the axes, where it covers no curve."""
    fig, ax = _pyplot().subplots(figsize=(6.4, 4.6))
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
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    fig.tight_layout()
    _save(fig, path, 100)


# --------------------------------------------------------------------------- Table 4 as a heat map
def _table4_panel(ax, letters, cols, who):
    """One heat map of Table 4: a square per (rare digit, factor, model) column and digit row, coloured by
    letter; the model named under its column, the factor and rare digit over each group of four."""
    plt, digits = _pyplot(), MNIST_CLASSES + ("Total",)
    for j, (k, f, m) in enumerate(cols):
        for i, d in enumerate(digits):
            letter = letters(k, f, d, m)
            ax.add_patch(plt.Rectangle((j, i), 0.95, 0.95, color=LETTER_COLOURS.get(letter or "x", "#ffffff"),
                                       ec="#999999" if letter is None else None, lw=0.3))
            if letter and letter not in "LM":
                ax.text(j + 0.47, i + 0.5, letter, ha="center", va="center", fontsize=6)
    ax.set(xlim=(0, len(cols)), ylim=(len(digits), 0))
    ax.set_title(f"Table 4, {who}", fontsize=9, pad=14)
    ax.set_yticks([i + 0.5 for i in range(len(digits))], ["all" if d == "Total" else d for d in digits], fontsize=7)
    ax.set_xticks([j + 0.47 for j in range(len(cols))], [m for _, _, m in cols], rotation=90, fontsize=6)
    groups = ax.secondary_xaxis("top")
    groups.set_xticks([j * 4 + 2 for j in range(10)], [f"{f} (k={k})" for k in (1, 2) for f in data.FACTORS],
                      fontsize=7)
    groups.tick_params(length=0)
    for j in range(1, 10):
        ax.axvline(j * 4 - 0.025, color="black", lw=0.8)
    ax.tick_params(length=0)


def plot_table4(agg, paper, path, summary="ours"):
    """A heat map of Table 4 under the `summary` reading (agg: the results aggregated under it), seed 0:
    ours alone, or below the paper's letters with `paper`; coloured by letter (LETTER_COLOURS); white:
    not run."""
    plt = _pyplot()
    cols = [(k, f, m) for k in (1, 2) for f in data.FACTORS for m in MODEL_ORDER]
    panels = ([("the paper", lambda k, f, d, m: paper[(k, f, d, m)]["letter"])] if paper is not None else []) \
        + [("ours", lambda k, f, d, m: our_letter(agg, k, f, d, m))]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 0.9 + 3.3 * len(panels)), squeeze=False)
    for ax, (who, letters) in zip(axes[:, 0], panels):
        _table4_panel(ax, letters, cols, who)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in LETTER_COLOURS.values()]
    fig.legend(handles + [plt.Rectangle((0, 0), 1, 1, fc="white", ec="#999999")],
               [f"{k}: {SHORT[k]}" for k in LETTER_COLOURS] + ["not run"], loc="lower center", ncol=9, fontsize=7,
               frameon=False)
    fig.suptitle(f"Table 4 under {READING_NAMES.get(summary, summary)}; seed 0", fontsize=9)
    fig.tight_layout(rect=(0, 0.05 if paper is not None else 0.09, 1, 1))
    _save(fig, path, 100)


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


def _pupr_panel(ax, rows, sfx, letters, rare):
    """One panel of plot_pupr: per class, and "all" set apart, P_u and P_r as bars with their 95% Wilson
    intervals, the verdict letter above; the rare class shaded. Returns what it drew, read back from the
    artists: {"P_u", "P_r": bar heights, "ci_u", "ci_r": [(lo, hi)] per bar, "letters"}."""
    x = np.arange(len(rows)) + 0.5 * (np.arange(len(rows)) == len(rows) - 1)
    ax.axvspan(rare - 0.5, rare + 0.5, color="gold", alpha=0.25, lw=0)
    drawn = {}
    for w, dx, colour, who in (("u", -0.2, "tab:blue", "D_u"), ("r", 0.2, "tab:red", "D_r")):
        p = np.array([r[f"P_{w}{sfx}"] for r in rows], dtype=float)
        ci = np.array([wilson(r[f"k_{w}{sfx}"], r[f"n_{w}{sfx}"]) for r in rows], dtype=float)
        err = np.clip(np.nan_to_num([p - ci[:, 0], ci[:, 1] - p]), 0, None)     # n = 0: no bar, no interval
        bars = ax.bar(x + dx, np.nan_to_num(p), 0.4, yerr=err, color=colour,
                      capsize=2, error_kw={"lw": 0.8}, label=f"P_{w}: share with the factor, {who} model's samples")
        drawn[f"P_{w}"] = [b.get_height() for b in bars]
        drawn[f"ci_{w}"] = [(s[0][1], s[1][1]) for s in bars.errorbar.lines[2][0].get_segments()]
    for xi, letter in zip(x, letters):
        ax.text(xi, 1.04, letter, ha="center", va="bottom", fontsize=8, fontweight="bold",
                bbox={"boxstyle": "round,pad=0.2", "fc": LETTER_COLOURS.get(letter, "#ffffff"), "ec": "none"})
    drawn["letters"] = [t.get_text() for t in ax.texts]
    names = [("all" if r["name"] == "Total" else str(r["name"])) + ("\n(rare)" if r["class"] == rare else "")
             for r in rows]
    ax.set_xticks(x, names, fontsize=8)
    ax.set(xlim=(-0.6, x[-1] + 0.6), ylim=(0, 1.16), ylabel="share of the class's samples with f = 1")
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
    fig, axes = _pyplot().subplots(len(panels), 1, figsize=(8, 0.9 + 3.1 * len(panels)), squeeze=False)
    drawn = {}
    for ax, (name, sfx, letters, heading) in zip(axes[:, 0], panels):
        drawn[name] = _pupr_panel(ax, rows, sfx, letters, res["rare"])
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


def plot_curves(hist, path, heading):
    """Training curves of a cell's models: one panel per loss column of their history (a val_ column
    dashed in its training column's panel; epoch, seconds, lr and sd_lambda are not losses), the D_u
    model blue and the D_r model red. Returns {panel: {line label: [(epoch, value)]}} as drawn."""
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
        ax.set(xlabel="epoch", title=col)
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
        ax.set_title(f"D_{w} model's samples", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{cell_title(res)}\nthe label oracle's class on each sample; *: the {res['factor']} oracle calls "
                 f"f = 1 ({res.get('oracle_recipe', 'paper')} oracles)", fontsize=8)
    fig.tight_layout()
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
        plot_curves(histories(res, folders), out("curves"), cell_title(res))
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
