"""ztest.py: the z-test of eq. 1, the verdicts, the paper's tables and the audit of any generator.

Paper: "Do Generative Models Learn Rare Generative Factors?", section 4 (framework, eq. 1, the L/M rule)
and section 6 (Tables 1-4). In reading order:

- statistics: z_score (eq. 1), the two-sided p-value, the L/M/? verdict, z_table, and our extensions
  (--test two-sample, Holm / Benjamini-Hochberg corrections, Cohen's h);
- tables: Tables 1/2 (z per digit), Table 3 (cars) and Table 4 (L/M summary) from result files, as
  text, Markdown, LaTeX, CSV and JSON, with several seeds aggregated per cell;
- sample quality: how readable the samples are (the label oracle's confident fraction), the class
  histogram, and warnings for mode collapse and for a D_u model that is not the balanced baseline;
- audit: the oracles label any generator's samples, and eq. 1 compares them;
- the steps the model scripts share (vae.py, gan.py and ddpm.py own their training loops and call
  these): common options, run folders, the data, checkpoints with RNG states, samples, and `evaluate`,
  which labels the samples, prints the z-table and saves result.json.

Imports run one way: data -> oracles -> ztest -> vae, gan, ddpm.

Run it:
    python ztest.py runs/ --out-dir results           # render Tables 1-4 from every result.json below runs/
    python ztest.py runs/gan/colour-rare1-seed0/result.json --test two-sample --correction holm
    python ztest.py --u U.npz --r R.npz --factor colour --rare 1 --model MyGAN --save audit.json
The last line audits any generator: U.npz / R.npz hold its uint8 samples [N,3,28,28] ([N,3,64,64] for cars)
from the model trained on D_u and on D_r.
"""
import argparse
import collections
import csv
import io
import json
import math
import os
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch
from scipy.stats import norm

import data
import oracles

# --------------------------------------------------------------------------- configuration
ALPHA = 0.05                                      # section 4: L when p > 0.05
TESTS = ("one-sample", "two-sample")              # one-sample = the paper's eq. 1
CORRECTIONS = ("none", "holm", "bh")              # none = the paper's per-class p-values
MODEL_ORDER = ("VAE", "GAN", "GAN-SD", "DM")      # column order of Tables 1-4
MIN_N = data.MIN_N     # ours: below 30 samples of a class in either model, "too few samples" (0 = the paper)
MARGIN = 0.1           # ours: the equivalence margin of TOST, in proportion (see tost)
SUMMARIES = ("ours", "paper", "equivalence")     # how Table 4 reads a cell (see summary_letter)
# How result files are read into tables: the test, the correction, alpha, the minimum count, the
# equivalence margin and Table 4's summary rule. The defaults are ours; the paper's are
# Reading(min_n=0, summary="paper").
Reading = collections.namedtuple("Reading", "test correction alpha min_n margin summary",
                                 defaults=("one-sample", "none", ALPHA, MIN_N, MARGIN, "ours"))
MNIST_CLASSES = data.MNIST_CLASSES
DATASETS = data.DATASETS
CAR_SIZE = data.CAR_SIZE


# --------------------------------------------------------------------------- statistics (eq. 1)
def _count(name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)) \
            or not math.isfinite(v) or v != int(v) or v < 0:
        raise ValueError(f"{name} must be an integer count >= 0, got {v!r}")
    return int(v)


def _prop(name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)) \
            or not 0.0 <= v <= 1.0:      # also rejects nan
        raise ValueError(f"{name} must be a proportion in [0, 1], got {v!r}")
    return float(v)


def _choice(name, v, accepted):
    if v not in accepted:
        raise ValueError(f"{name} must be one of {', '.join(map(str, accepted))}, got {v!r}")
    return v


def z_score(p_r, p_u, n):
    """Eq. 1: z = (P_r - P_u) / sqrt(P_u (1 - P_u) / n), the one-sample z-test of P_r against P_u.

    P_u, P_r: proportion of samples with f = 1 within class c, from the models trained on D_u and D_r.
    n: the paper writes M; we use the number of D_r samples that the label oracle assigns to class c,
    which is the sample size P_r is measured on (Table 3 shows it: the Volkswagen row has n = black +
    white). The Total row uses all M samples. Returns NaN (shown as "-") when z is undefined: P_u of 0
    or 1, or n = 0. Never inf. Bad input raises ValueError naming the value.
    """
    p_r, p_u, n = _prop("p_r", p_r), _prop("p_u", p_u), _count("n", n)
    if n == 0 or p_u in (0.0, 1.0):
        return math.nan
    return (p_r - p_u) / math.sqrt(p_u * (1.0 - p_u) / n)


def z_two_sample(k_r, n_r, k_u, n_u):
    """Pooled two-proportion z-test (beyond the paper): also counts the sampling error of P_u, which
    eq. 1 treats as exact. z = (P_r - P_u) / sqrt(P (1 - P) (1/n_r + 1/n_u)), P = (k_r + k_u) / (n_r + n_u).
    NaN when a sample is empty or P is 0 or 1."""
    k_r, n_r, k_u, n_u = (_count(a, v) for a, v in (("k_r", k_r), ("n_r", n_r), ("k_u", k_u), ("n_u", n_u)))
    for k, n, a in ((k_r, n_r, "k_r"), (k_u, n_u, "k_u")):
        if k > n:
            raise ValueError(f"{a}={k} exceeds its sample size {n}")
    if n_r == 0 or n_u == 0 or k_r + k_u in (0, n_r + n_u):
        return math.nan
    p = (k_r + k_u) / (n_r + n_u)
    return (k_r / n_r - k_u / n_u) / math.sqrt(p * (1 - p) * (1 / n_r + 1 / n_u))


def p_value(z):
    """Two-sided p-value of a standard normal z (scipy.stats.norm); NaN stays NaN."""
    return math.nan if not math.isfinite(z) else float(2 * norm.sf(abs(z)))


def verdict(z, p, c, rare, alpha=ALPHA, n=None, min_n=0):
    """Section 4's rule: "L" (learned) when p > alpha; "M" (memorised) when p <= alpha and either c = k
    with z > 0 or c != k with z < 0; "?" for any other significant deviation (the paper calls it rare);
    "-" when z is undefined. The Total row (c = None) counts as c != k: D_r has the factor in one class
    only, so memorisation lowers its overall share.
    Our minimum-count rule comes first: "n" (too few samples) when n = min(n_u, n_r) < min_n. With a
    handful of samples p > 0.05 is almost certain, and that is no evidence of learning; min_n = 0 is
    the paper's rule exactly."""
    if n is not None and n < min_n:
        return "n"
    if not (math.isfinite(z) and math.isfinite(p)):
        return "-"
    if p > alpha:
        return "L"
    return "M" if ((z > 0) if c == rare else (z < 0)) else "?"


def cohens_h(p_r, p_u):
    """Effect size h = 2 asin(sqrt(P_r)) - 2 asin(sqrt(P_u)) (Cohen 1988); NaN when either is undefined."""
    if not (math.isfinite(p_r) and math.isfinite(p_u)):
        return math.nan
    return 2 * math.asin(math.sqrt(_prop("p_r", p_r))) - 2 * math.asin(math.sqrt(_prop("p_u", p_u)))


def tost(k_r, n_r, k_u, n_u, margin=MARGIN, test="one-sample"):
    """Equivalence (our extension): the p-value of two one-sided tests (TOST, Schuirmann 1987) of
    H0: |P_r - P_u| >= margin against H1: |P_r - P_u| < margin. With d = P_r - P_u and its standard
    error se, the two one-sided p-values are sf((d + margin) / se) and cdf((d - margin) / se); TOST's p
    is the larger. p <= alpha *shows* that the factor's share moved by less than the margin (the
    1 - 2 alpha confidence interval of d lies inside +-margin): learning shown, which "p > 0.05" of
    eq. 1 ("not shown to differ") is not. NaN when se is 0 or undefined.
    one-sample: the se of eq. 1, sqrt(P_u (1 - P_u) / n_r), P_u taken as known as eq. 1 does.
    two-sample: the unpooled se sqrt(P_r (1 - P_r) / n_r + P_u (1 - P_u) / n_u) (pooling assumes d = 0,
    which TOST does not).
    The default margin, 0.1 in proportion, is ten percentage points of the factor's share: at P = 0.5 it
    is Cohen's h = 0.20, his "small" effect, the smallest change one would call a change. With P_u = 0.5,
    TOST needs n_r >= 68 to show equivalence even when d = 0 (se <= 0.1 / 1.645), and n_r >= 271 when
    d = 0.05: "learned" then has to be earned with samples, which is the point."""
    k_r, n_r, k_u, n_u = (_count(a, v) for a, v in (("k_r", k_r), ("n_r", n_r), ("k_u", k_u), ("n_u", n_u)))
    if not (isinstance(margin, (int, float)) and 0 < margin < 1):
        raise ValueError(f"margin must be in (0, 1), got {margin!r}")
    _choice("test", test, TESTS)
    if n_r == 0 or n_u == 0:
        return math.nan
    p_r, p_u = k_r / n_r, k_u / n_u
    var = p_u * (1 - p_u) / n_r if test == "one-sample" else p_r * (1 - p_r) / n_r + p_u * (1 - p_u) / n_u
    if var <= 0:
        return math.nan
    d, se = p_r - p_u, math.sqrt(var)
    return float(max(norm.sf((d + margin) / se), norm.cdf((d - margin) / se)))


def summary_letter(row, how="ours", alpha=ALPHA, min_n=MIN_N):
    """One cell of Table 4 under the three readings of the paper's question:
    ours (default):  the row's verdict, L / M / ? / - / n (too few samples);
    paper:           the paper's binary rule, L when p > alpha, else M (a significant deviation in either
                     direction and an undefined z count as M), and M too below min_n; --min-n 0 gives
                     the paper's Table 4 exactly;
    equivalence:     L only when TOST shows |P_r - P_u| < margin; M / ? / - / n as ours; "i"
                     (inconclusive) when neither equivalence nor a difference is shown."""
    _choice("summary", how, SUMMARIES)
    if how == "ours":
        return row["verdict"]
    few = min(row["n_u"], row["n_r"]) < min_n
    if how == "paper":
        return "L" if not few and math.isfinite(row["p_adj"]) and row["p_adj"] > alpha else "M"
    if row["verdict"] != "L":
        return row["verdict"]
    return "L" if math.isfinite(row["p_eq"]) and row["p_eq"] <= alpha else "i"


def adjust_p(ps, method="none"):
    """Multiple-testing correction over a family of p-values (NaN entries are left out of the family).
    holm: step-down, p_(i) * (m - i + 1), made monotone; bh: Benjamini-Hochberg, p_(i) * m / i, made
    monotone from the top. Adjusted values are capped at 1."""
    _choice("correction", method, CORRECTIONS)
    ps = np.asarray(ps, dtype=float)
    out = ps.copy()
    ok = np.flatnonzero(np.isfinite(ps))
    m = len(ok)
    if method == "none" or m == 0:
        return out
    order = ok[np.argsort(ps[ok], kind="stable")]
    ranked = ps[order]
    if method == "holm":
        adj = np.maximum.accumulate(ranked * (m - np.arange(m)))
    else:
        adj = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    out[order] = np.minimum(adj, 1.0)
    return out


def count_classes(y, f, n_classes):
    """Per class c: n[c] = samples labelled c, k[c] = of those, samples with f = 1."""
    y, f = np.asarray(y), np.asarray(f)
    if y.ndim != 1 or y.shape != f.shape:
        raise ValueError(f"labels and factors must be 1-D of equal length, got {y.shape} and {f.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be integers in 0..{n_classes - 1}, got values {np.unique(y)[:10]}")
    if f.size and not np.isin(f, (0, 1)).all():
        raise ValueError(f"factors must be 0 or 1, got values {np.unique(f)[:10]}")
    n = np.bincount(y.astype(np.int64), minlength=n_classes)
    k = np.bincount(y.astype(np.int64), weights=f.astype(np.int64), minlength=n_classes).astype(np.int64)
    return {"n": n.tolist(), "k": k.tolist()}


def rows_from_counts(counts, rare, classes, test="one-sample", correction="none", alpha=ALPHA, min_n=MIN_N,
                     margin=MARGIN):
    """The z-table from per-class counts {"u": {"n", "k"}, "r": {"n", "k"}}: one row per class plus
    Total, each with n, k, P for D_u and D_r, z, p, p_adj (corrected over the class rows; Total keeps its
    own p), Cohen's h, the verdict (taken on p_adj; "n" below min_n samples), the TOST p-value p_eq
    and the equivalence reading eq (summary_letter)."""
    _choice("test", test, TESTS)
    if isinstance(min_n, bool) or not isinstance(min_n, (int, np.integer)) or min_n < 0:
        raise ValueError(f"min_n must be an integer >= 0, got {min_n!r}")
    _choice("correction", correction, CORRECTIONS)
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    C = len(classes)
    if isinstance(rare, bool) or not isinstance(rare, (int, np.integer)) or not 0 <= rare < C:
        raise ValueError(f"rare class must be an integer in 0..{C - 1}, got {rare!r}")
    nu, ku, nr, kr = ([_count(f"{w}.{a}[{i}]", v) for i, v in enumerate(counts[w][a])]
                      for w, a in (("u", "n"), ("u", "k"), ("r", "n"), ("r", "k")))
    for vals in (nu, ku, nr, kr):
        if len(vals) != C:
            raise ValueError(f"counts need {C} classes, got {len(vals)}")
    rows = []
    for c, name in list(enumerate(classes)) + [(None, "Total")]:
        sl = slice(None) if c is None else slice(c, c + 1)
        n_u, k_u, n_r, k_r = sum(nu[sl]), sum(ku[sl]), sum(nr[sl]), sum(kr[sl])
        if k_u > n_u or k_r > n_r:
            raise ValueError(f"class {name}: factor count exceeds the class count ({k_u}/{n_u}, {k_r}/{n_r})")
        P_u = k_u / n_u if n_u else math.nan
        P_r = k_r / n_r if n_r else math.nan
        if test == "two-sample":
            z = z_two_sample(k_r, n_r, k_u, n_u)
        else:   # eq. 1 with n = n_r (the Total row: n = M, all D_r samples)
            z = z_score(P_r, P_u, n_r) if n_u and n_r else math.nan
        rows.append({"class": "Total" if c is None else c, "name": name, "n_u": n_u, "k_u": k_u,
                     "P_u": P_u, "n_r": n_r, "k_r": k_r, "P_r": P_r, "z": z, "p": p_value(z),
                     "h": cohens_h(P_r, P_u), "p_eq": tost(k_r, n_r, k_u, n_u, margin, test)})
    adj = adjust_p([r["p"] for r in rows[:-1]], correction)
    for r, pa in zip(rows, list(adj) + [rows[-1]["p"]]):
        r["p_adj"] = float(pa)
        r["verdict"] = verdict(r["z"], r["p_adj"], None if r["class"] == "Total" else r["class"], rare, alpha,
                               n=min(r["n_u"], r["n_r"]), min_n=min_n)
        r["eq"] = summary_letter(r, "equivalence", alpha, min_n)
    return rows


def z_table(y_u, f_u, y_r, f_r, rare, classes, test="one-sample", correction="none", alpha=ALPHA, min_n=MIN_N):
    """Per-class rows plus a Total row (see rows_from_counts) from the oracle labels y and factors f of
    the samples of the D_u model (y_u, f_u) and of the D_r model (y_r, f_r)."""
    C = len(classes)
    counts = {"u": count_classes(y_u, f_u, C), "r": count_classes(y_r, f_r, C)}
    return rows_from_counts(counts, rare, classes, test, correction, alpha, min_n)


def _fmt(v, spec=".2f"):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def format_rows(rows, title=""):
    """A z-table as aligned text (the per-model view of Tables 1-3), with the TOST p-value and the
    equivalence reading beside the verdict."""
    head = ["class", "n_u", "P_u", "n_r", "P_r", "z", "p", "h", "verdict", "p_eq", "eq"]
    body = [[str(r["name"]), str(r["n_u"]), _fmt(r["P_u"], ".3f"), str(r["n_r"]), _fmt(r["P_r"], ".3f"),
             _fmt(r["z"]), _fmt(r["p_adj"], ".3g"), _fmt(r["h"]), r["verdict"], _fmt(r.get("p_eq"), ".3g"),
             r.get("eq", "")] for r in rows]
    return (title + "\n" if title else "") + data.text_grid(head, body)


# --------------------------------------------------------------------------- sample quality
# Every verdict counts the samples of a class as the label oracle reads them: an unreadable sample lands
# in a class almost at random, diluting the rare class and leaking the factor into the others. So every
# run reports how readable its samples are, and whether the D_u model is the balanced baseline that
# eq. 1 assumes (the paper's Tables C.3 and C.4: P_u near 0.5 in every class).
CONFIDENT = 0.9                 # a sample "reads as" its class when the label oracle gives it p > 0.9
COLLAPSE = (0.2, 2.5)           # a class holding under 0.2x or over 2.5x its uniform share (2% / 25% of
                                # MNIST samples) signals mode collapse
BASELINE_DEV = 0.25             # |P_u - 0.5| > 0.25: the D_u model is not balanced in that class


def quality(p_label, counts, classes, min_n=MIN_N):
    """The sample-quality report of one run. p_label: {"u", "r"} -> label-oracle probabilities [M, C];
    counts: as count_classes gives them. Per model: the confident fraction, the class histogram and the
    smallest and largest class share; then the warnings: D_u classes with n_u < min_n or
    |P_u - 0.5| > 0.25, and classes holding under 2% or over 25% of either model's samples."""
    C, out, warnings = len(classes), {}, []
    for w in ("u", "r"):
        n = np.asarray(counts[w]["n"])
        share = n / max(1, n.sum())
        out[w] = {"confident": float((np.asarray(p_label[w]).max(1) > CONFIDENT).mean()),
                  "histogram": n.tolist(), "share_min": float(share.min()), "share_max": float(share.max())}
        low, high = (f * 1 / C for f in COLLAPSE)
        bad = [f"{classes[c]} {share[c]:.1%}" for c in range(C) if not low <= share[c] <= high]
        if bad:
            warnings.append(f"mode collapse in the D_{w} samples: class share outside {low:.0%}-{high:.0%}: "
                            + ", ".join(bad))
    nu, ku = counts["u"]["n"], counts["u"]["k"]
    few = [f"{classes[c]} (n_u {nu[c]})" for c in range(C) if nu[c] < min_n]
    off = [f"{classes[c]} (P_u {ku[c] / nu[c]:.2f})" for c in range(C)
           if nu[c] >= min_n and abs(ku[c] / nu[c] - 0.5) > BASELINE_DEV]
    if few or off:
        warnings.append("D_u baseline: P_u ~ 0.5 (the premise of eq. 1) is not met for classes "
                        + ", ".join(few + off))
    return {**out, "threshold": CONFIDENT, "warnings": warnings}


def format_quality(q, classes):
    """The report as text: one line per model, then one WARNING line per warning."""
    lines = [f"sample quality: label oracle p > {q['threshold']:g} on"]
    for w in ("u", "r"):
        n = q[w]["histogram"]
        lines.append(f"  D_{w}: {q[w]['confident']:.1%} of the samples; per class "
                     + " ".join(f"{c}:{k}" for c, k in zip(classes, n))
                     + f" (share {q[w]['share_min']:.1%}-{q[w]['share_max']:.1%})")
    return "\n".join(lines + [f"WARNING: {x}" for x in q["warnings"]])


# --------------------------------------------------------------------------- tables (Tables 1-4)
def _rows(res, reading=Reading()):
    """A result's z-table, recomputed from its counts so that any reading applies."""
    r = reading
    return rows_from_counts(res["counts"], res["rare"], res["classes"], r.test, r.correction, r.alpha, r.min_n,
                            r.margin)


def load_results(paths):
    """Result dicts from result.json files and from folders searched for them."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(d, "result.json") for d, _, fs in os.walk(p) if "result.json" in fs)
        else:
            files.append(p)
    out = []
    for f in files:
        try:
            with open(f) as fh:
                res = json.load(fh)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read result file {f}: {e}") from None
        missing = [k for k in ("model", "dataset", "factor", "rare", "seed", "classes", "counts")
                   if not isinstance(res, dict) or k not in res]
        if missing:
            raise ValueError(f"{f} is not a result file (missing {', '.join(missing)})")
        out.append({"p_in": 1.0, "p_out": 0.0, **res, "file": f})
    if not out:
        raise ValueError(f"no result.json found in {', '.join(paths)}")
    return out


def _model_key(m):
    """Columns in the paper's order VAE / GAN / GAN-SD / DM; variants (VAE-b4, ...) after their base."""
    base = next((i for i, b in sorted(enumerate(MODEL_ORDER), key=lambda t: -len(t[1])) if m.startswith(b)), 4)
    return base, m != (MODEL_ORDER[base] if base < 4 else ""), m


def aggregate(results, reading=Reading()):
    """Group results by cell (dataset, factor, rare, p_in, p_out, model). Per class: the mean and
    spread (sample sd) of the finite z over seeds, the Table 4 letter of every seed under the reading's
    summary rule, and the D_u and D_r counts."""
    cells = {}
    for res in results:
        key = (res["dataset"], res["factor"], res["rare"], res["p_in"], res["p_out"], res["model"])
        seeds = cells.setdefault(key, {})
        if res["seed"] in seeds:
            print(f"warning: {res['file']} repeats seed {res['seed']} of {key}; ignored", file=sys.stderr)
            continue
        seeds[res["seed"]] = _rows(res, reading)
    agg = {}
    for key, seeds in cells.items():
        per = [seeds[s] for s in sorted(seeds)]
        rows = []
        for i, row in enumerate(per[0]):
            z = np.array([r[i]["z"] for r in per], dtype=float)
            z = z[np.isfinite(z)]
            v = "".join(summary_letter(r[i], reading.summary, reading.alpha, reading.min_n) for r in per)
            rows.append({"name": row["name"], "z_mean": float(z.mean()) if len(z) else math.nan,
                         "z_sd": float(z.std(ddof=1)) if len(z) > 1 else math.nan, "verdicts": v,
                         "n_L": v.count("L"), **{k: [r[i][k] for r in per] for k in ("k_u", "n_u", "k_r", "n_r")}})
        agg[key] = {"seeds": sorted(seeds), "rows": rows}
    return agg


def _z_part(row, seeds):
    """One model's entry of a Table 1/2 cell; bold (L) when most seeds give L."""
    if seeds == 1:
        return _fmt(row["z_mean"]) + (" (n)" if row["verdicts"] == "n" else ""), row["verdicts"] == "L"
    sd = "" if not math.isfinite(row["z_sd"]) else f"±{row['z_sd']:.2f}"
    return f"{_fmt(row['z_mean'])}{sd} ({row['n_L']}/{seeds} L)", 2 * row["n_L"] > seeds


def _groups(agg, dataset):
    return sorted({k[2:5] for k in agg if k[0] == dataset})


def _models(agg, dataset, group):
    return sorted({k[5] for k in agg if k[0] == dataset and k[2:5] == group}, key=_model_key)


NOTE_Z = "bold / *: the RGF is learned (L: p > 0.05 with at least min-n samples, or as the summary rule says); " \
         "(n): too few samples (n_u or n_r below min-n), never L; -: z undefined (P_u of 0 or 1, or n = 0)"
LETTERS = {"L": "learned", "M": "memorised", "?": "significant in the other direction", "-": "z undefined",
           "n": "too few samples (n_u or n_r below min-n; never counted as L)",
           "i": "inconclusive (neither shown equivalent nor shown to differ)"}


def _table_z(agg, group, how):
    """Table 1 (k = 1) / Table 2 (k = 2): z per digit, one column per factor, "VAE / GAN / GAN-SD / DM"."""
    k, pin, pout = group
    models = _models(agg, "mnist", group)
    factors = [f for f in data.FACTORS if any(("mnist", f) + group + (m,) in agg for m in models)]
    body = []
    for i, name in enumerate(MNIST_CLASSES + ("Total",)):
        cells = [[_z_part(c["rows"][i], len(c["seeds"])) if c else ("n/a", False)
                  for c in (agg.get(("mnist", f) + group + (m,)) for m in models)] for f in factors]
        body.append([[(name, False)]] + cells)
    paper = (pin, pout) == (1.0, 0.0) and k in (1, 2)
    skew = "" if (pin, pout) == (1.0, 0.0) else f", p_in {pin:g}, p_out {pout:g}"
    return {"slug": f"table{k}" if paper else f"table-z-rare{k}" + skew.replace(", ", "-").replace(" ", ""),
            "title": (f"Table {k}: " if paper else "") + f"z-scores, RGF in digit {k}{skew}{how}",
            "header": ["digit"] + [f"{f} ({' / '.join(models)})" for f in factors], "rows": body, "note": NOTE_Z}


def _table4(agg, groups, how):
    """Table 4: the verdict of every MNIST cell (one letter per model and seed), with counts per column;
    '?' and '-' are counted on their own rows."""
    head, cols = ["digit"], []          # cols[j][i][m]: verdict string of column j, row i, model m
    for g in groups:
        models = _models(agg, "mnist", g)
        for f in data.FACTORS:
            cells = [agg.get(("mnist", f) + g + (m,)) for m in models]
            if any(cells):
                head.append(f"{f} (k={g[0]}" + ("" if g[1:] == (1.0, 0.0) else f", {g[1]:g}/{g[2]:g}") + ")")
                cols.append([[c["rows"][i]["verdicts"] if c else "n/a" for c in cells] for i in range(11)])
    body = [[[(n, False)]] + [[(v, False) for v in col[i]] for col in cols]
            for i, n in enumerate(MNIST_CLASSES + ("all",))]
    for sym in ("L", "?", "-", "n", "i"):
        counts = [[sum(col[i][m].count(sym) for i in range(11)) for m in range(len(col[0]))] for col in cols]
        if sym == "L" or any(map(any, counts)):
            body.append([[("Count" if sym == "L" else f"Count {sym}", False)]]
                        + [[(str(n), False) for n in c] for c in counts])
    verdicts = [v for col in cols for row in col for v in row if v != "n/a"]
    used = [s for s in LETTERS if s not in "LM" and any(s in v for v in verdicts)]
    return {"slug": "table4", "title": f"Table 4: RGF learning (L) vs. memorization (M){how}", "header": head,
            "rows": body, "note": f"A total of {sum(v.count('L') for v in verdicts)} cases were learned out of "
                                  f"{sum(map(len, verdicts))}. Cells: one letter per model and seed"
                                  + "".join(f"; {s}: {LETTERS[s]}" for s in used) + "."}


def _table3(agg, group, how):
    """Table 3: CompCars; per model the D_r samples per make in black / white, and z."""
    head, body = ["make"], [[[(n, False)]] for n in ("Volkswagen", "Toyota", "Total")]
    for m in _models(agg, "cars", group):
        c = agg[("cars", "colour") + group + (m,)]
        head += [f"{m} black", f"{m} white", f"{m} z"]
        for i, r in enumerate(c["rows"]):      # f = 1 is white (data.make_cars_dataset)
            white, n = np.mean(r["k_r"]), np.mean(r["n_r"])
            body[i] += [[(f"{n - white:.0f}", False)], [(f"{white:.0f}", False)], [_z_part(r, len(c["seeds"]))]]
    return {"slug": "table3", "title": f"Table 3: CompCars, z-scores, colour RGF: white Volkswagen, black "
            f"Toyota{how}", "header": head, "rows": body,
            "note": "black / white: D_r samples per make (label oracle) and colour (factor oracle); " + NOTE_Z}


def _table_p(agg, group):
    """Tables C.3 (k = 1) and C.4 (k = 2): P_u and P_r per class with n_u and n_r, one row per factor and
    model: the check of the paper's premise that the D_u model is balanced (P_u near 0.5). Over several
    seeds, P pools the counts and n is the mean per seed."""
    k, pin, pout = group
    paper = (pin, pout) == (1.0, 0.0) and k in (1, 2)
    skew = "" if (pin, pout) == (1.0, 0.0) else f", p_in {pin:g}, p_out {pout:g}"
    body = []
    for f in data.FACTORS:
        for m in _models(agg, "mnist", group):
            c = agg.get(("mnist", f) + group + (m,))
            if c:
                body.append([[(f"{f} {m}", False)]] + [[_p_part(r, "u"), _p_part(r, "r")] for r in c["rows"]])
    slug = {1: "tableC3", 2: "tableC4"}[k] if paper else f"table-p-rare{k}" + skew.replace(", ", "-").replace(" ", "")
    title = (f"Table C.{k + 2}: " if paper else "") + f"P_u / P_r per class (n_u / n_r), RGF in digit {k}{skew}"
    return {"slug": slug, "title": title, "header": ["factor, model"] + list(MNIST_CLASSES + ("Total",)),
            "rows": body, "note": "P_u (n_u) / P_r (n_r): share of samples with the factor among those the label "
                                  "oracle puts in the class; !: |P_u - 0.5| > 0.25, the D_u model is not balanced "
                                  "there (the paper's premise is P_u near 0.5)"}


def _p_part(row, which):
    k, n = sum(row[f"k_{which}"]), sum(row[f"n_{which}"])
    if not n:
        return "- (0)", False
    flag = "!" if which == "u" and abs(k / n - 0.5) > 0.25 else ""
    return f"{k / n:.2f}{flag} ({n / len(row[f'n_{which}']):.0f})", False


def tables(agg, reading=Reading()):
    """Tables 1/2 (and one such table per other rare digit or skew), Table 4, Tables C.3/C.4 and Table 3
    (cars), as dicts {slug, title, header, rows, note}; a cell is a list of (text, is_L) parts joined by
    " / "."""
    r = reading
    how = ("" if r.test == "one-sample" else f", {r.test} test") + \
        ("" if r.correction == "none" else f", {r.correction} correction") + \
        ("" if r.summary == "ours" else f", {r.summary} summary") + ("" if r.min_n == MIN_N else f", min-n {r.min_n}")
    groups = _groups(agg, "mnist")
    out = [_table_z(agg, g, how) for g in groups] + ([_table4(agg, groups, how)] if groups else [])
    out += [_table_p(agg, g) for g in groups]
    return out + [_table3(agg, g, how) for g in _groups(agg, "cars")]


def _tex(s):
    return s.replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%").replace("_", r"\_") \
        .replace("#", r"\#").replace("±", r"$\pm$")


def render(table, style="text"):
    """A table as text (L marked *), Markdown (L bold), LaTeX (L \\textbf) or CSV (L marked *)."""
    mark = {"text": "{}*", "csv": "{}*", "md": "**{}**", "tex": r"\textbf{{{}}}"}[style]
    esc = _tex if style == "tex" else (lambda s: s)
    cell = lambda parts: " / ".join(mark.format(esc(t)) if b else esc(t) for t, b in parts)
    head, body = [esc(h) for h in table["header"]], [[cell(c) for c in r] for r in table["rows"]]
    if style == "text":
        return f"{table['title']}\n{data.text_grid(head, body)}\n{table['note']}\n"
    if style == "csv":
        buf = io.StringIO()
        csv.writer(buf).writerows([head] + body)
        return buf.getvalue()
    if style == "md":
        lines = ["| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head)] + body]
        return f"### {table['title']}\n\n" + "\n".join(lines) + f"\n\n{table['note']}\n"
    lines = [" & ".join(r) + r" \\" for r in [head] + body]
    return ("\\begin{table}[ht]\n\\centering\n\\caption{" + esc(table["title"]) + "}\n\\resizebox{\\textwidth}{!}{"
            "\\begin{tabular}{l" + "c" * (len(head) - 1) + "}\n\\hline\n" + lines[0] + "\n\\hline\n"
            + "\n".join(lines[1:]) + "\n\\hline\n\\end{tabular}}\n\\par\\small " + esc(table["note"])
            + "\n\\end{table}\n")


def export(results, tabs, agg, out_dir, reading=Reading()):
    """Write tables.{txt,md,tex,json}, one CSV per table and rows.csv (every row of every result)."""
    for style, ext in (("text", "txt"), ("md", "md"), ("tex", "tex")):
        data.save_text("\n".join(render(t, style) for t in tabs), os.path.join(out_dir, f"tables.{ext}"))
    for t in tabs:
        data.save_text(render(t, "csv"), os.path.join(out_dir, f"{t['slug']}.csv"))
    cells = [{"dataset": k[0], "factor": k[1], "rare": k[2], "p_in": k[3], "p_out": k[4], "model": k[5], **v}
             for k, v in sorted(agg.items(), key=lambda kv: (kv[0][:5], _model_key(kv[0][5])))]
    plain = [{**{k: v for k, v in t.items() if k != "rows"}, "rows": [[render({**t, "rows": [[c]], "header": ["x"]},
             "csv").splitlines()[1] for c in r] for r in t["rows"]]} for t in tabs]
    data.save_json({**reading._asdict(), "tables": plain, "cells": cells}, os.path.join(out_dir, "tables.json"))
    keys = ["model", "dataset", "factor", "rare", "p_in", "p_out", "seed", "class", "n_u", "k_u", "P_u",
            "n_r", "k_r", "P_r", "z", "p", "p_adj", "h", "verdict", "p_eq", "eq", "file"]
    rows = [data.json_safe({k: {**res, **r}.get(k, "") for k in keys}) for res in results for r in _rows(res, reading)]
    data.save_csv(rows, os.path.join(out_dir, "rows.csv"))
    print(f"wrote tables.txt/.md/.tex/.json, {', '.join(t['slug'] + '.csv' for t in tabs)} and rows.csv to {out_dir}")


# --------------------------------------------------------------------------- audit: any generator's samples
def load_samples(path, shape):
    """uint8 samples [N, *shape] from an .npz (key x or samples, or its only array) or .npy file."""
    try:
        z = np.load(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read samples {path}: {e}") from None
    if isinstance(z, np.lib.npyio.NpzFile):
        keys = [k for k in ("x", "samples") if k in z.files] or z.files
        if len(keys) != 1 and keys[0] not in ("x", "samples"):
            raise ValueError(f"{path}: which array? keys {z.files}; accepted: x, samples, or a single array")
        z = z[keys[0]]
    if z.dtype != np.uint8 or z.ndim != 4 or tuple(z.shape[1:]) != tuple(shape) or not len(z):
        raise ValueError(f"{path}: samples are {z.dtype} {tuple(z.shape)}; accepted: uint8 [N,{','.join(map(str, shape))}]")
    return z


def audit(u, r, factor="colour", rare=1, dataset="mnist", model="audit", root=None, cache_dir=None,
          device="auto", data_seed=0, smoke=False, min_n=MIN_N):
    """Evaluate any generator: its samples from the D_u model (file u) and the D_r model (file r) are
    classified by the oracles and compared with eq. 1. Returns a result dict (render it like ours)."""
    shape = (3, CAR_SIZE, CAR_SIZE) if dataset == "cars" else (3, 28, 28)
    su, sr = load_samples(u, shape), load_samples(r, shape)
    dev = data.pick_device(device)
    orc = oracles.load_oracles(factor, dataset, root=root, cache_dir=cache_dir, device=dev, data_seed=data_seed,
                               smoke=smoke)
    classes = tuple(data.CARS_CLASSES) if dataset == "cars" else MNIST_CLASSES
    counts = {w: count_classes(*oracles.classify(orc, s), len(classes)) for w, s in (("u", su), ("r", sr))}
    return {"format": "rgf-result/1", "model": model, "run_name": "audit", "dataset": dataset, "factor": factor,
            "rare": rare, "p_in": 1.0, "p_out": 0.0, "seed": 0, "data_seed": data_seed, "samples": len(sr),
            "classes": list(classes), "counts": counts, "min_n": min_n,
            "rows": rows_from_counts(counts, rare, classes, min_n=min_n),
            "test": "one-sample", "correction": "none", "oracle_acc": orc["acc"], "oracle_smoke": smoke,
            "dirs": {"u": u, "r": r}, "device": str(dev),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# --------------------------------------------------------------------------- evaluation of a model script's run
# The model scripts (vae.py, gan.py, ddpm.py) own their training loops and take the shared run steps from
# data.py; the evaluation, which needs the oracles and the z-test, is here.
def finished_result(dirs, args, eval_keys=()):
    """The saved result of this cell when it is done with the same settings (printed again), else None.
    With --force, or --stage u, nothing counts as done."""
    path = os.path.join(dirs["r"], "result.json")
    if args.force or args.stage == "u" or not os.path.exists(path):
        return None
    with open(path) as fh:
        res = json.load(fh)
    data.check_identity(path, res["identity"], json.loads(data.sample_key(args, "r", eval_keys)))
    print(f"{path} exists: cell already done (use --force to redo it)")
    print(format_rows(_rows(res, Reading(min_n=args.min_n)), _title(res)))
    if "quality" in res:
        print(format_quality(res["quality"], res["classes"]))
    return res


def _title(res):
    skew = "" if (res["p_in"], res["p_out"]) == (1.0, 0.0) else f", p_in {res['p_in']:g}, p_out {res['p_out']:g}"
    what = "cars" if res["dataset"] == "cars" else res["factor"]
    return f"{res['model']}, {what}, rare class {res['classes'][res['rare']]}{skew}, seed {res['seed']}"


def evaluate(args, name, run_name, dirs, runs, device, eval_keys=()):
    """Section 4, steps 4-5: the oracles label the M samples of the D_u and the D_r model, eq. 1 compares
    the factor's share per class, the z-table is printed and saved as result.json in the D_r folder.
    runs: {"u": (samples, history, timings), "r": (...)}, as the script's training returned them; with
    --stage r the D_u samples come from an earlier run. Returns the result, or None when there is
    nothing to compare yet (--stage u, or no D_u samples)."""
    if args.stage == "u":
        return None
    if "u" not in runs:
        su = data.cached_samples(dirs["u"], args, "u", eval_keys)
        if su is None:
            print(f"no D_u samples in {dirs['u']} yet: run --stage u (or both) for the z-test")
            return None
        runs = {"u": (su, {}, {}), **runs}
    times = {f"{k}_{w}": v for w in ("u", "r") for k, v in runs[w][2].items()}
    t0 = time.time()
    orc = oracles.load_oracles(args.factor, args.dataset, root=args.data_root, cache_dir=args.cache_dir,
                               device=device, data_seed=args.data_seed, smoke=args.smoke)
    times["oracles"] = time.time() - t0
    t0 = time.time()
    (y_u, f_u), (y_r, f_r) = oracles.classify(orc, runs["u"][0]), oracles.classify(orc, runs["r"][0])
    p_label = {w: oracles.predict_proba(orc, runs[w][0])[0] for w in ("u", "r")}
    times["classify"] = time.time() - t0
    classes = tuple(data.CARS_CLASSES) if args.dataset == "cars" else MNIST_CLASSES
    counts = {"u": count_classes(y_u, f_u, len(classes)), "r": count_classes(y_r, f_r, len(classes))}
    rows = rows_from_counts(counts, args.rare, classes, min_n=args.min_n)
    below = {k: v for k, v in orc["acc"].items() if v < orc["target"]}
    if below and not args.smoke:    # (smoke oracles are trained for seconds; their accuracy is not checked)
        print(f"WARNING: oracle accuracy below target ({', '.join(f'{k} {v:.2%}' for k, v in below.items())}"
              f" < {orc['target']:.0%}): verdicts of this cell are not trustworthy", file=sys.stderr)
    hist = {w: runs[w][1] for w in ("u", "r") if w in data.stages(args)}
    res = {"format": "rgf-result/1", "model": name, "run_name": run_name, "dataset": args.dataset,
           "factor": args.factor, "rare": args.rare, "p_in": args.p_in, "p_out": args.p_out, "seed": args.seed,
           "data_seed": args.data_seed, "samples": args.samples, "classes": list(classes), "counts": counts,
           "test": "one-sample", "correction": "none", "min_n": args.min_n, "margin": MARGIN, "rows": rows,
           "oracle_acc": orc["acc"],
           "oracle_below_target": bool(below), "oracle_smoke": bool(args.smoke), "device": str(device),
           "timings": times, "dirs": dirs, "history": hist, "config": vars(args),
           "identity": json.loads(data.sample_key(args, "r", eval_keys)), "torch": torch.__version__,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    res["quality"] = quality(p_label, counts, classes, args.min_n)
    print(format_rows(rows, _title(res)))
    print(format_quality(res["quality"], classes))
    data.save_json(res, os.path.join(dirs["r"], "result.json"))
    print(f"saved {os.path.join(dirs['r'], 'result.json')}")
    return res



# --------------------------------------------------------------------------- main
def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.error = data.fail
    a = p.add_argument
    a("results", nargs="*", help="result.json files, or folders searched for them")
    a("--u", help="audit: .npz of uint8 samples from the model trained on D_u")
    a("--r", help="audit: .npz of uint8 samples from the model trained on D_r")
    a("--factor", default="colour", choices=data.FACTORS, help="audit: generative factor (default: colour)")
    a("--dataset", default="mnist", choices=DATASETS, help="audit: mnist or cars (default: mnist)")
    a("--rare", type=int, default=None, help="audit: rare class k (default: 1; 0 for cars)")
    a("--model", default="audit", help="audit: model name in the tables (default: audit)")
    a("--save", help="audit: write the result JSON here (render it later with the others; default: none)")
    a("--test", default="one-sample", choices=TESTS, help="one-sample = eq. 1 (default: one-sample)")
    a("--correction", default="none", choices=CORRECTIONS, help="across classes (default: none)")
    a("--alpha", type=float, default=ALPHA, help=f"significance level (default: {ALPHA})")
    a("--min-n", type=int, default=MIN_N, help=f"a class with fewer samples in either model is 'too few "
      f"samples' (n), never L; 0 = the paper's rule (default: {MIN_N})")
    a("--margin", type=float, default=MARGIN, help=f"equivalence margin of TOST, in proportion, in (0, 1) "
      f"(default: {MARGIN})")
    a("--summary", default="ours", choices=SUMMARIES, help="Table 4's rule: ours (L/M/?/-/n), paper (binary "
      "L/M, as the paper's Table 4) or equivalence (L only when TOST shows it) (default: ours)")
    a("--out-dir", help="write tables.{txt,md,tex,json}, table CSVs and rows.csv here (default: print only)")
    a("--data-root", help="MNIST root for the oracles (default: $RGF_DATA_ROOT, else ./data)")
    a("--cache-dir", help="oracle cache (default: <data-root>/rgf-cache)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    a("--data-seed", type=int, default=0, help="data seed of the oracles' D_u (default: 0)")
    a("--smoke", action="store_true", help="audit with the smoke oracles (tests only; default: off)")
    return p


def _reading(args):
    """The reading of the command line, checked: one line and exit 2 for a bad value."""
    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha {args.alpha:g} out of range; accepted: 0 < alpha < 1")
    if args.min_n < 0:
        raise ValueError(f"--min-n {args.min_n} out of range; accepted: an integer >= 0 (0 = the paper's rule)")
    if not 0 < args.margin < 1:
        raise ValueError(f"--margin {args.margin:g} out of range; accepted: a proportion in (0, 1)")
    return Reading(args.test, args.correction, args.alpha, args.min_n, args.margin, args.summary)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        reading = _reading(args)
        if args.u or args.r:
            if not (args.u and args.r) or args.results:
                raise ValueError("audit mode needs both --u and --r, and no result files")
            rare = args.rare if args.rare is not None else (0 if args.dataset == "cars" else 1)
            if not 0 <= rare < (2 if args.dataset == "cars" else 10):
                raise ValueError(f"--rare {rare} out of range for {args.dataset}")
            res = audit(args.u, args.r, args.factor, rare, args.dataset, args.model, args.data_root,
                        args.cache_dir, args.device, args.data_seed, args.smoke, reading.min_n)
            print(format_rows(_rows(res, reading), _title(res)))
            if args.save:
                data.save_json(res, args.save)
                print(f"saved {args.save}")
            results = [{**res, "file": args.save or "audit"}] if args.out_dir else []
        elif args.results:
            results = load_results(args.results)
        else:
            raise ValueError("nothing to do: give result.json files or folders, or --u U.npz --r R.npz")
        if results:
            weak = [r["file"] for r in results if r.get("oracle_below_target") or r.get("oracle_smoke")]
            if weak:
                print(f"warning: {len(weak)} result(s) used smoke oracles or oracles under their accuracy "
                      f"target, e.g. {weak[0]}", file=sys.stderr)
            agg = aggregate(results, reading)
            tabs = tables(agg, reading)
            print("\n".join(render(t) for t in tabs))
            if args.out_dir:
                export(results, tabs, agg, args.out_dir, reading)
    except (ValueError, FileNotFoundError) as e:
        data.fail(str(e))


if __name__ == "__main__":
    main()
