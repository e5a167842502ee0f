"""ztest.py: the z-test of eq. 1, the verdicts, the paper's tables and the audit of any generator.

Paper: "Do Generative Models Learn Rare Generative Factors?", section 4 (framework, eq. 1, the L/M rule)
and section 6 (Tables 1-4). In reading order:

- statistics: z_score (eq. 1), the two-sided p-value, the L/M/? verdict, z_table, and our extensions
  (--test two-sample, Holm / Benjamini-Hochberg corrections, Cohen's h, the equivalence test, the
  readable-samples reading and the baseline letter);
- sample quality: how readable the samples are (the label oracle's confident fraction), the class
  histogram, the Fréchet distance, and warnings for mode collapse and for a D_u model that is not the
  balanced baseline;
- tables: Tables 1/2 (z per digit), Table 3 (cars) and Table 4 (L/M summary) from result files, as
  text, Markdown, LaTeX, CSV and JSON, with several seeds aggregated per cell;
- audit: the oracles label any generator's samples, and eq. 1 compares them;
- evaluation of a model script's run: `evaluate`, which vae.py, gan.py and ddpm.py call after their own
  training loops (the other run steps they share are in data.py); it labels the samples, prints the
  z-table and saves result.json;
- read last, for results/README.md only: the paper's Tables 1, 2 and 4 side by side with ours
  (--paper) and the figures (--figures).

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
import PIL.Image
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
BASELINE_DEV = 0.25    # ours: |P_u - 0.5| > 0.25 in a class: its D_u baseline is broken, letter "b"
CONFIDENT = 0.9        # ours: a sample is readable when the label oracle gives its class p > 0.9
# The readable reading can be asked for at these label-oracle thresholds (result.json keeps the counts
# at each), optionally also requiring a confident factor oracle (P(f = 1) > 0.9 or < 0.1).
CONFIDENCE_GRID = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
FACTOR_CONFIDENT = 0.9
SUMMARIES = ("ours", "paper", "equivalence", "readable")     # how Table 4 reads a cell (see summary_letter)
# How result files are read into tables: the test, the correction, alpha, the minimum count, the
# equivalence margin, Table 4's summary rule, the baseline threshold and the readable reading's
# thresholds. The defaults are ours; the paper's are Reading(min_n=0, summary="paper").
Reading = collections.namedtuple(
    "Reading", "test correction alpha min_n margin summary baseline_dev confidence factor_confident",
    defaults=("one-sample", "none", ALPHA, MIN_N, MARGIN, "ours", BASELINE_DEV, CONFIDENT, False))
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


def verdict(z, p, c, rare, alpha=ALPHA, n=None, min_n=0, p_u=None, baseline_dev=None):
    """Section 4's rule: "L" (learned) when p > alpha; "M" (memorised) when p <= alpha and either c = k
    with z > 0 or c != k with z < 0; "?" for any other significant deviation (the paper calls it rare);
    "-" when z is undefined. The Total row (c = None) counts as c != k: D_r has the factor in one class
    only, so memorisation lowers its overall share.
    Our two rules come first, and neither ever gives L or M:
    - "n" (too few samples) when n = min(n_u, n_r) < min_n. With a handful of samples p > 0.05 is
      almost certain, and that is no evidence of learning;
    - "b" (broken baseline) when |P_u - 0.5| > baseline_dev. Eq. 1 measures P_r against P_u, and the
      paper's premise is that the D_u model draws the factor in about half of every class (its Tables
      C.3-C.4). A D_u model that draws a class's factor 10% or 95% of the time is no reference: z then
      compares the D_r model with a distorted baseline, and an L or M would say more about the D_u
      model's failure than about the rare factor.
    min_n = 0 and baseline_dev = None give the paper's rule exactly."""
    if n is not None and n < min_n:
        return "n"
    if baseline_dev is not None and p_u is not None and math.isfinite(p_u) and abs(p_u - 0.5) > baseline_dev:
        return "b"
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
    """One cell of Table 4 under the four readings of the paper's question:
    ours (default):  the row's verdict, L / M / ? / - / n (too few samples) / b (broken baseline);
    paper:           the paper's binary rule, L when p > alpha, else M (a significant deviation in either
                     direction and an undefined z count as M), and M too below min_n; --min-n 0 gives
                     the paper's Table 4 exactly;
    equivalence:     L only when TOST shows |P_r - P_u| < margin; M / ? / - / n / b as ours; "i"
                     (inconclusive) when neither equivalence nor a difference is shown;
    readable:        ours, computed on the samples the label oracle reads confidently (verdict_read;
                     "x" when the result has no such counts)."""
    _choice("summary", how, SUMMARIES)
    if how == "ours":
        return row["verdict"]
    if how == "readable":
        return row.get("verdict_read") or "x"
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


def readable_counts(y, f, p_label, p_factor, n_classes):
    """Our readable-samples reading: the counts of count_classes kept to the samples that the label oracle
    reads with p > t, for every t of CONFIDENCE_GRID ("0.9"), and the same also requiring a confident
    factor oracle, P(f = 1) > 0.9 or < 0.1 ("0.9+f"). p_label [N, C] (y is its argmax), p_factor [N].
    Kept in result.json, so that a table can ask for any of these thresholds without the samples."""
    conf = np.asarray(p_label).max(1)
    sure = np.abs(np.asarray(p_factor) - 0.5) > FACTOR_CONFIDENT - 0.5
    y, f, out = np.asarray(y), np.asarray(f), {}
    for t in CONFIDENCE_GRID:
        for suffix, keep in (("", conf > t), ("+f", (conf > t) & sure)):
            out[f"{t:g}{suffix}"] = count_classes(y[keep], f[keep], n_classes)
    return out


def counts_of(res, reading):
    """The counts a reading works on: {"u", "r"} of the readable reading's threshold, or None when the
    result predates that reading (or the threshold is not in CONFIDENCE_GRID)."""
    key = f"{reading.confidence:g}" + ("+f" if reading.factor_confident else "")
    got = res.get("readable", {})
    return {w: got[w][key] for w in ("u", "r")} if all(key in got.get(w, {}) for w in ("u", "r")) else None


def rows_from_counts(counts, rare, classes, test="one-sample", correction="none", alpha=ALPHA, min_n=MIN_N,
                     margin=MARGIN, baseline_dev=BASELINE_DEV):
    """The z-table from per-class counts {"u": {"n", "k"}, "r": {"n", "k"}}: one row per class plus
    Total, each with n, k, P for D_u and D_r, z, p, p_adj (corrected over the class rows; Total keeps its
    own p), Cohen's h, the verdict (taken on p_adj; "n" below min_n samples, "b" where |P_u - 0.5| >
    baseline_dev; None switches that rule off), the TOST p-value p_eq and the equivalence reading eq
    (summary_letter)."""
    _choice("test", test, TESTS)
    if isinstance(min_n, bool) or not isinstance(min_n, (int, np.integer)) or min_n < 0:
        raise ValueError(f"min_n must be an integer >= 0, got {min_n!r}")
    _choice("correction", correction, CORRECTIONS)
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if baseline_dev is not None and not (isinstance(baseline_dev, (int, float)) and 0 < baseline_dev <= 0.5):
        raise ValueError(f"baseline_dev must be in (0, 0.5] or None, got {baseline_dev!r}")
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
                               n=min(r["n_u"], r["n_r"]), min_n=min_n, p_u=r["P_u"], baseline_dev=baseline_dev)
        r["eq"] = summary_letter(r, "equivalence", alpha, min_n)
    return rows


def z_table(y_u, f_u, y_r, f_r, rare, classes, test="one-sample", correction="none", alpha=ALPHA, min_n=MIN_N,
            baseline_dev=BASELINE_DEV):
    """Per-class rows plus a Total row (see rows_from_counts) from the oracle labels y and factors f of
    the samples of the D_u model (y_u, f_u) and of the D_r model (y_r, f_r)."""
    C = len(classes)
    counts = {"u": count_classes(y_u, f_u, C), "r": count_classes(y_r, f_r, C)}
    return rows_from_counts(counts, rare, classes, test, correction, alpha, min_n, baseline_dev=baseline_dev)


def _fmt(v, spec=".2f"):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def format_rows(rows, title="", confidence=CONFIDENT):
    """A z-table as aligned text (the per-model view of Tables 1-3): all samples (the paper's reading and
    ours, with the TOST p-value and the equivalence reading), then, when the rows carry it, the readable
    reading on the samples the label oracle reads with p > confidence."""
    read = "verdict_read" in rows[0]
    head = ["class", "n_u", "P_u", "n_r", "P_r", "z", "p", "h", "verdict", "p_eq", "eq"]
    head += ["|", "n_u'", "P_u'", "n_r'", "P_r'", "z'", "p'", "read"] if read else []
    body = []
    for r in rows:
        line = [str(r["name"]), str(r["n_u"]), _fmt(r["P_u"], ".3f"), str(r["n_r"]), _fmt(r["P_r"], ".3f"),
                _fmt(r["z"]), _fmt(r["p_adj"], ".3g"), _fmt(r["h"]), r["verdict"], _fmt(r.get("p_eq"), ".3g"),
                r.get("eq", "")]
        if read:
            line += ["|", str(r["n_u_read"]), _fmt(r["P_u_read"], ".3f"), str(r["n_r_read"]),
                     _fmt(r["P_r_read"], ".3f"), _fmt(r["z_read"]), _fmt(r["p_adj_read"], ".3g"), r["verdict_read"]]
        body.append(line)
    legend = (f"\nleft: all samples; right ('): the readable reading, samples the label oracle reads with "
              f"p > {confidence:g}" if read else "")
    return (title + "\n" if title else "") + data.text_grid(head, body) + legend


# --------------------------------------------------------------------------- sample quality
# Every verdict counts the samples of a class as the label oracle reads them: an unreadable sample lands
# in a class almost at random, diluting the rare class and leaking the factor into the others. So every
# run reports how readable its samples are, and whether the D_u model is the balanced baseline that
# eq. 1 assumes (the paper's Tables C.3 and C.4: P_u near 0.5 in every class).
COLLAPSE = (0.2, 2.5)           # a class holding under 0.2x or over 2.5x its uniform share (2% / 25% of
                                # MNIST samples) signals mode collapse


FD_N = 5000                     # Fréchet distance: at most this many samples against as many real digits


def gaussian_stats(feats):
    """Mean and covariance (ddof 1) of features [N, d], in float64."""
    feats = np.asarray(feats, dtype=np.float64)
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2):
    """The Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2), squared (Dowson &
    Landau 1982), which is FID when the features are Inception's (Heusel et al. 2017, eq. 6):
        |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1^1/2 cov2 cov1^1/2)^1/2).
    (cov1 cov2)^1/2 of the usual formula has the same trace as the symmetric matrix above, whose square
    root comes from a symmetric eigendecomposition: real, and stable where scipy's sqrtm of a non-symmetric
    product can return complex noise. Tiny negative eigenvalues (rounding) are clipped to 0."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, dtype=np.float64)), np.atleast_2d(np.asarray(cov2, dtype=np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != mu1.shape * 2:
        raise ValueError(f"Fréchet distance needs means [d] and covariances [d, d] of one d, got "
                         f"{mu1.shape}, {cov1.shape}, {mu2.shape}, {cov2.shape}")
    w, v = np.linalg.eigh((cov1 + cov1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T                  # cov1^1/2
    inner = root1 @ cov2 @ root1
    tr_root = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * tr_root)


def frechet_report(feats, real_feats, seed=0):
    """The Fréchet distance of a model's samples to real held-out digits, with its floor. feats: {"u", "r"}
    -> label-oracle features of the samples; real_feats: the same for real digits distributed as D_u and
    D_r. The real digits are split into halves A and B; the samples' FD is taken to A, the floor is B's FD
    to A, on as many digits as samples (at most FD_N), so that both carry the same small-sample bias: a
    run can come near its floor, never under it in expectation."""
    out = {}
    for w in feats:
        real = np.random.default_rng([seed, 5]).permutation(len(real_feats[w]))
        a, b = real[: len(real) // 2], real[len(real) // 2:]
        n = min(len(feats[w]), len(b), FD_N)
        stats_a = gaussian_stats(real_feats[w][a[:FD_N]])
        out[w] = frechet_distance(*gaussian_stats(feats[w][:n]), *stats_a)
        out[f"floor_{w}"] = frechet_distance(*gaussian_stats(real_feats[w][b[:n]]), *stats_a)
        out[f"n_{w}"] = int(n)
    return out


def quality(p_label, counts, classes, min_n=MIN_N, factors=None, fd=None, real=None, soft=None):
    """The sample-quality report of one run. p_label: {"u", "r"} -> label-oracle probabilities [M, C];
    counts: as count_classes gives them; factors: {"u", "r"} -> the factor oracle's calls [M] (for the
    readable filter's share per factor value); fd: frechet_report's; real: {"confident_f0",
    "confident_f1"}, the label oracle's confident share on real held-out digits without and with the
    factor; soft: softness_report's. Per model: the confident fraction (overall and per factor value),
    the class histogram and the smallest and largest class share; then the warnings: D_u classes with
    n_u < min_n or |P_u - 0.5| > BASELINE_DEV, classes holding under 2% or over 25% of either model's
    samples, and samples softer than the factor oracle can read."""
    C, out, warnings = len(classes), {}, []
    for w in ("u", "r"):
        n = np.asarray(counts[w]["n"])
        share = n / max(1, n.sum())
        sure = np.asarray(p_label[w]).max(1) > CONFIDENT
        out[w] = {"confident": float(sure.mean()), "histogram": n.tolist(), "share_min": float(share.min()),
                  "share_max": float(share.max())}
        if factors is not None:     # the readable filter may keep one factor value more readily
            fw = np.asarray(factors[w])
            out[w].update({f"confident_f{v}": float(sure[fw == v].mean()) if (fw == v).any() else math.nan
                           for v in (0, 1)})
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
    if soft:
        limit = -1.0 if soft["limit"] is None else soft["limit"]
        hard = [f"D_{w} (like real digits blurred at sigma {_sigma(soft[f'sigma_{w}'])})" for w in ("u", "r")
                if soft[f"sigma_{w}"] > limit]
        if hard:
            warnings.append("samples softer than the factor oracle can read: " + ", ".join(hard) + "; it holds "
                            + ("at no blur" if soft["limit"] is None else f"up to sigma {soft['limit']:g}")
                            + ", so P_u and P_r may measure sharpness")
    return {**out, "threshold": CONFIDENT, "fd": fd, "real": real, "soft": soft, "warnings": warnings}


def _sigma(v):
    return "> 2" if v is None or not math.isfinite(v) else f"{v:.2f}"    # inf is null in result.json


def format_quality(q, classes):
    """The report as text: one line per model, the real digits' line, the Fréchet distances, then one
    WARNING line per warning."""
    lines = [f"sample quality: label oracle p > {q['threshold']:g} on"]
    for w in ("u", "r"):
        n, by_f = q[w]["histogram"], ""
        if "confident_f1" in q[w]:
            by_f = f" (called f=1: {_pct(q[w]['confident_f1'])}, f=0: {_pct(q[w]['confident_f0'])})"
        lines.append(f"  D_{w}: {q[w]['confident']:.1%} of the samples{by_f}; per class "
                     + " ".join(f"{c}:{k}" for c, k in zip(classes, n))
                     + f" (share {q[w]['share_min']:.1%}-{q[w]['share_max']:.1%})")
    if q.get("real"):
        lines.append(f"  real held-out digits: {_pct(q['real']['confident_f1'])} with the factor, "
                     f"{_pct(q['real']['confident_f0'])} without")
    if q.get("soft"):
        sf = q["soft"]
        lines.append(f"  softness: D_u like real digits blurred at sigma {_sigma(sf['sigma_u'])}, D_r at "
                     f"{_sigma(sf['sigma_r'])}; the factor oracle holds up to "
                     + ("no blur" if sf["limit"] is None else f"sigma {sf['limit']:g}"))
    if q.get("fd"):
        fd = q["fd"]
        lines.append(f"Fréchet distance to real held-out digits in the label oracle's features "
                     f"(real-vs-real floor): D_u {fd['u']:.2f} (floor {fd['floor_u']:.2f}, {fd['n_u']} "
                     f"samples), D_r {fd['r']:.2f} (floor {fd['floor_r']:.2f}, {fd['n_r']} samples)")
    return "\n".join(lines + [f"WARNING: {x}" for x in q["warnings"]])


def _pct(v):
    return "-" if v is None or not math.isfinite(v) else f"{v:.1%}"     # NaN is null in result.json


def equivalent_blur(soft, profile):
    """The blur sigma at which real digits look as soft as `soft` (oracles.softness's median), read off
    the oracle checkpoint's curve {sigma: {"softness"}} by linear interpolation; inf beyond its end."""
    sig = np.array(sorted(float(k) for k in profile))
    curve = np.maximum.accumulate([profile[f"{v:g}"]["softness"] for v in sig])
    return math.inf if soft > curve[-1] else float(np.interp(soft, curve, sig))


def softness_report(samples, orc):
    """How soft the samples {"u", "r"} look, as a blur sigma of real digits (equivalent_blur), against the
    largest blur at which the factor oracle still reads its factor (the checkpoint's blur_limit). None
    when the oracles carry no blur profile (test fakes)."""
    if not orc.get("blur"):
        return None
    out = {"limit": orc.get("blur_limit")}
    for w in ("u", "r"):
        out[f"softness_{w}"] = float(np.median(oracles.softness(samples[w])))
        out[f"sigma_{w}"] = equivalent_blur(out[f"softness_{w}"], orc["blur"])
    return out


# --------------------------------------------------------------------------- tables (Tables 1-4)
READ_KEYS = ("n_u", "k_u", "P_u", "n_r", "k_r", "P_r", "z", "p_adj", "verdict")   # the readable reading's


def _rows(res, reading=Reading()):
    """A result's z-table, recomputed from its counts so that any reading applies; each row also carries
    the readable reading (n_u_read ... verdict_read) when the result holds its counts."""
    r = reading
    opts = (res["rare"], res["classes"], r.test, r.correction, r.alpha, r.min_n, r.margin, r.baseline_dev)
    rows = rows_from_counts(res["counts"], *opts)
    read = counts_of(res, r)
    if read is not None:
        for row, rd in zip(rows, rows_from_counts(read, *opts)):
            row.update({f"{k}_read": rd[k] for k in READ_KEYS})
    return rows


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
    sfx = "_read" if reading.summary == "readable" else ""    # z and counts of the readable reading
    agg = {}
    for key, seeds in cells.items():
        per = [seeds[s] for s in sorted(seeds)]
        rows = []
        for i, row in enumerate(per[0]):
            z = np.array([r[i].get("z" + sfx, math.nan) for r in per], dtype=float)
            z = z[np.isfinite(z)]
            v = "".join(summary_letter(r[i], reading.summary, reading.alpha, reading.min_n) for r in per)
            rows.append({"name": row["name"], "z_mean": float(z.mean()) if len(z) else math.nan,
                         "z_sd": float(z.std(ddof=1)) if len(z) > 1 else math.nan, "verdicts": v,
                         "n_L": v.count("L"),
                         **{k: [r[i].get(k + sfx, 0) for r in per] for k in ("k_u", "n_u", "k_r", "n_r")}})
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
           "b": "broken baseline (|P_u - 0.5| above the baseline threshold; never L or M)",
           "i": "inconclusive (neither shown equivalent nor shown to differ)",
           "x": "no readable counts in the result (made before that reading existed)"}


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
    for sym in ("L", "?", "-", "n", "b", "i", "x"):
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
        ("" if r.summary == "ours" else f", {r.summary} summary") + ("" if r.min_n == MIN_N else f", min-n {r.min_n}") + \
        ("" if r.summary != "readable" else f" (label p > {r.confidence:g}" + (
            f", factor p > {FACTOR_CONFIDENT:g}" if r.factor_confident else "") + ")") + \
        ("" if r.baseline_dev == BASELINE_DEV else f", baseline threshold {r.baseline_dev:g}")
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
            "n_r", "k_r", "P_r", "z", "p", "p_adj", "h", "verdict", "p_eq", "eq"] + \
        [f"{k}_read" for k in READ_KEYS] + ["file"]
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


def real_references(dataset, factor, rare, p_in=1.0, p_out=0.0, root=None, cache_dir=None, data_seed=0):
    """Real held-out images distributed as D_u and as D_r: {"u": (x, y, f), "r": (x, y, f)}. MNIST: every
    test digit once (data.reference_digits); cars: the test images, and for D_r the white Volkswagens and
    black Toyotas among them."""
    if dataset == "cars":
        x, y, f = data.make_cars_dataset(data.data_root(root), split="test", size=CAR_SIZE, seed=data_seed)
        keep = f == (y == 0)
        return {"u": (x, y, f), "r": (x[keep], y[keep], f[keep])}
    return {w: data.reference_digits(factor, w, rare, p_in, p_out, data_seed, root, cache_dir) for w in ("u", "r")}


def label_samples(orc, samples, dataset, factor, rare, p_in=1.0, p_out=0.0, root=None, cache_dir=None,
                  data_seed=0, min_n=MIN_N):
    """Section 4, step 4, for the samples {"u": uint8 [M,3,H,W], "r": ...} of the models trained on D_u
    and D_r: the oracles label every sample. Returns (counts, readable, quality): the per-class counts of
    all samples (eq. 1's input), those of the readable reading at every threshold (readable_counts), and
    the sample-quality report, with the Fréchet distance to real held-out images and the label oracle's
    confident share on real images with and without the factor."""
    classes = tuple(data.CARS_CLASSES) if dataset == "cars" else MNIST_CLASSES
    calls = {w: oracles.classify(orc, samples[w]) for w in ("u", "r")}
    probs = {w: oracles.predict_proba(orc, samples[w]) for w in ("u", "r")}
    counts = {w: count_classes(*calls[w], len(classes)) for w in ("u", "r")}
    readable = {w: readable_counts(*calls[w], *probs[w], len(classes)) for w in ("u", "r")}
    refs = real_references(dataset, factor, rare, p_in, p_out, root, cache_dir, data_seed)
    fd = frechet_report({w: oracles.features(orc, samples[w][:FD_N]) for w in ("u", "r")},
                        {w: oracles.features(orc, refs[w][0]) for w in ("u", "r")})
    sure, f_real = oracles.predict_proba(orc, refs["u"][0])[0].max(1) > CONFIDENT, refs["u"][2]
    real = {f"confident_f{v}": float(sure[f_real == v].mean()) for v in (0, 1)}
    q = quality({w: probs[w][0] for w in ("u", "r")}, counts, classes, min_n,
                factors={w: calls[w][1] for w in ("u", "r")}, fd=fd, real=real, soft=softness_report(samples, orc))
    return counts, readable, q


def audit(u, r, factor="colour", rare=1, dataset="mnist", model="audit", root=None, cache_dir=None,
          device="auto", data_seed=0, smoke=False, min_n=MIN_N, recipe="robust"):
    """Evaluate any generator: its samples from the D_u model (file u) and the D_r model (file r) are
    classified by the oracles and compared with eq. 1. Returns a result dict (render it like ours)."""
    shape = (3, CAR_SIZE, CAR_SIZE) if dataset == "cars" else (3, 28, 28)
    su, sr = load_samples(u, shape), load_samples(r, shape)
    dev = data.pick_device(device)
    orc = oracles.load_oracles(factor, dataset, root=root, cache_dir=cache_dir, device=dev, data_seed=data_seed,
                               smoke=smoke, recipe_name=recipe)
    classes = tuple(data.CARS_CLASSES) if dataset == "cars" else MNIST_CLASSES
    counts, readable, q = label_samples(orc, {"u": su, "r": sr}, dataset, factor, rare, root=root,
                                        cache_dir=cache_dir, data_seed=data_seed, min_n=min_n)
    res = {"format": "rgf-result/1", "model": model, "run_name": "audit", "dataset": dataset, "factor": factor,
           "rare": rare, "p_in": 1.0, "p_out": 0.0, "seed": 0, "data_seed": data_seed, "samples": len(sr),
           "classes": list(classes), "counts": counts, "readable": readable, "min_n": min_n,
           "test": "one-sample", "correction": "none", "oracle_acc": orc["acc"], "oracle_smoke": smoke,
           "oracle_recipe": recipe,
           "quality": q, "dirs": {"u": u, "r": r}, "device": str(dev),
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    res["rows"] = _rows(res, Reading(min_n=min_n))
    return res


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
    if res.get("oracle_recipe", "paper") != args.oracles:     # other oracles: label the samples again
        return None
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
                               device=device, data_seed=args.data_seed, smoke=args.smoke, recipe_name=args.oracles)
    times["oracles"] = time.time() - t0
    t0 = time.time()
    counts, readable, q = label_samples(orc, {w: runs[w][0] for w in ("u", "r")}, args.dataset, args.factor,
                                        args.rare, args.p_in, args.p_out, args.data_root, args.cache_dir,
                                        args.data_seed, args.min_n)
    times["classify"] = time.time() - t0
    classes = tuple(data.CARS_CLASSES) if args.dataset == "cars" else MNIST_CLASSES
    below = {k: v for k, v in orc["acc"].items() if v < orc["target"]}
    if below and not args.smoke:    # (smoke oracles are trained for seconds; their accuracy is not checked)
        print(f"WARNING: oracle accuracy below target ({', '.join(f'{k} {v:.2%}' for k, v in below.items())}"
              f" < {orc['target']:.0%}): verdicts of this cell are not trustworthy", file=sys.stderr)
    hist = {w: runs[w][1] for w in ("u", "r") if w in data.stages(args)}
    res = {"format": "rgf-result/1", "model": name, "run_name": run_name, "dataset": args.dataset,
           "factor": args.factor, "rare": args.rare, "p_in": args.p_in, "p_out": args.p_out, "seed": args.seed,
           "data_seed": args.data_seed, "samples": args.samples, "classes": list(classes), "counts": counts,
           "readable": readable, "test": "one-sample", "correction": "none", "min_n": args.min_n,
           "margin": MARGIN, "baseline_dev": BASELINE_DEV, "confidence": CONFIDENT,
           "oracle_acc": orc["acc"], "oracle_recipe": args.oracles,
           "oracle_below_target": bool(below), "oracle_smoke": bool(args.smoke), "device": str(device),
           "timings": times, "dirs": dirs, "history": hist, "config": vars(args),
           "identity": json.loads(data.sample_key(args, "r", eval_keys)), "torch": torch.__version__,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    res["quality"], res["rows"] = q, _rows(res, Reading(min_n=args.min_n))
    print(format_rows(res["rows"], _title(res)))
    print(format_quality(res["quality"], classes))
    data.save_json(res, os.path.join(dirs["r"], "result.json"))
    print(f"saved {os.path.join(dirs['r'], 'result.json')}")
    return res



# --------------------------------------------------------------------------- the paper's tables, side by side
LETTER_COLOURS = {"L": "#4daf4a", "M": "#e41a1c", "n": "#cccccc", "b": "#ff9f1c", "?": "#984ea3", "-": "#666666",
                  "i": "#ffe066", "x": "#ffffff"}


def load_paper(path):
    """The paper's Tables 1, 2 and 4 entered as data (results/paper/paper-cells.csv): {(rare, factor, digit,
    model): {"z": float or nan, "bold": bool, "letter": "L" or "M"}}, digit "0".."9" or "Total"."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as e:
        raise ValueError(f"cannot read the paper's cells {path}: {e}") from None
    return {(int(r["rare"]), r["factor"], r["digit"], r["model"]):
            {"z": float(r["z"]) if r["z"] else math.nan, "bold": r["z_bold"] == "1", "letter": r["letter"]}
            for r in rows}


def _our_letter(agg, rare, factor, digit, model):
    """Seed 0's letter of a cell (the paper's tables are one run per cell), or None when not run."""
    cell = agg.get(("mnist", factor, rare, 1.0, 0.0, model))
    if not cell or 0 not in cell["seeds"]:
        return None
    i = 10 if digit == "Total" else int(digit)
    return cell["rows"][i]["verdicts"][cell["seeds"].index(0)]


def agreement(aggs, paper):
    """Per model and factor, for every reading in aggs ({reading name: aggregate()}): how many of the
    paper's Table 4 cells (both rare digits, 10 digits and 'all') we ran, how many get the paper's letter,
    and how many we decide at all (L or M). Rows [model, factor, cells, then matches/decided per reading]."""
    rows = []
    for model in MODEL_ORDER:
        for factor in data.FACTORS:
            keys = [k for k in paper if k[1] == factor and k[3] == model]
            line, ran = [model, factor], None
            for name, agg in aggs.items():
                ours = [(_our_letter(agg, k[0], factor, k[2], model), paper[k]["letter"]) for k in keys]
                ours = [(o, p) for o, p in ours if o is not None]
                ran = len(ours)
                match, decided = sum(o == p for o, p in ours), sum(o in "LM" for o, _ in ours)
                line.append(f"{match}/{ran} ({match / ran:.0%}); decided {decided}" if ran else "-")
            if ran:
                rows.append(line[:2] + [str(ran)] + line[2:])
    return rows


def side_by_side(agg, paper, rare, factor):
    """Our Table 1 (rare 1) or 2 (rare 2) column of a factor next to the paper's: rows [digit, then per
    model 'ours (letter) | paper (letter)']."""
    body = []
    for digit in MNIST_CLASSES + ("Total",):
        line = [digit]
        for model in MODEL_ORDER:
            cell = agg.get(("mnist", factor, rare, 1.0, 0.0, model))
            i = 10 if digit == "Total" else int(digit)
            ours = "n/a" if not cell else f"{_fmt(cell['rows'][i]['z_mean'])} ({cell['rows'][i]['verdicts']})"
            p = paper[(rare, factor, digit, model)]
            line.append(f"{ours} | {_fmt(p['z'])} ({p['letter']})")
        body.append(line)
    return body


def seed_agreement(agg):
    """Per cell run with several seeds (model, factor, rare digit): how many of its 11 rows (digits and
    Total) get the same letter in every seed, and the median spread (sd) of z over seeds."""
    rows = []
    for key in sorted((k for k, c in agg.items() if len(c["seeds"]) > 1), key=lambda k: (k[1], k[2], _model_key(k[5]))):
        c = agg[key]
        same = sum(len(set(r["verdicts"])) == 1 for r in c["rows"])
        sds = [r["z_sd"] for r in c["rows"] if math.isfinite(r["z_sd"])]
        rows.append([key[5], key[1], str(key[2]), ",".join(map(str, c["seeds"])), f"{same}/{len(c['rows'])}",
                     _fmt(float(np.median(sds))) if sds else "-"])
    return rows


def compare(results, paper, reading, out_dir=None):
    """Print (and write to out_dir as compare.md) our Table 4's agreement with the paper's under the four
    readings, and our Tables 1-2 beside the paper's, factor by factor."""
    aggs = {name: aggregate(results, reading._replace(summary=name, **({"min_n": 0} if name == "paper" else {})))
            for name in SUMMARIES}
    head = ["model", "factor", "cells"] + [f"{n}: same letter as the paper" for n in SUMMARIES]
    rows = agreement(aggs, paper)
    text = ["### Agreement with the paper's Table 4 (seed 0)", "", "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    print("\nAgreement with the paper's Table 4 (seed 0)\n" + data.text_grid(head, rows))
    agg = aggs[reading.summary]
    seeds = seed_agreement(agg)
    if seeds:
        sh = ["model", "factor", "rare", "seeds", "rows with one letter in every seed", "median sd of z"]
        print(f"\nSeeds ({reading.summary} reading)\n" + data.text_grid(sh, seeds))
        text += ["", f"### Seeds ({reading.summary} reading)", "", "| " + " | ".join(sh) + " |", "|---" * len(sh) + "|"]
        text += ["| " + " | ".join(r) + " |" for r in seeds]
    for k in (1, 2):
        for f in data.FACTORS:
            if not any(key[1:3] == (f, k) for key in agg):
                continue
            body = side_by_side(agg, paper, k, f)
            title = f"Table {k}, {f}: our z (letters, {reading.summary} reading) | the paper's z (letter)"
            head = " | ".join(f"{m} ours | {m} paper" for m in MODEL_ORDER)
            text += ["", f"### {title}", "", f"| digit | {head} |", "|---" * (1 + 2 * len(MODEL_ORDER)) + "|"]
            text += ["| " + " | ".join(r) + " |" for r in body]
    if out_dir:
        data.save_text("\n".join(text) + "\n", os.path.join(out_dir, "compare.md"))
        print(f"wrote {os.path.join(out_dir, 'compare.md')}")


# --------------------------------------------------------------------------- figures
def plot_disc_loss(res, path):
    """Figure 3 from a GAN result (its "disc_loss": {"u", "r"} -> rows [epoch, factor, loss, sd] of the rare
    class): D's loss w.r.t. the "real" label on the validation digits of the rare class, solid with the
    factor and dashed without, for the models trained on D_u and D_r; the log 2 boundary (logit 0); the
    SD phase shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for w, colour in (("u", "tab:blue"), ("r", "tab:red")):
        for v, style, what in ((1, "-", "with"), (0, "--", "without")):
            pts = sorted((e, loss) for e, f, loss, _ in res["disc_loss"][w] if f == v)
            if pts:
                ax.plot(*zip(*pts), style, color=colour, label=f"D_{w}, {what} the factor")
    ax.axhline(math.log(2), color="green", ls=":", label="log 2 (logit 0)")
    if res.get("sd_epochs"):
        ax.axvspan(0.5, res["sd_epochs"] + 0.5, color="grey", alpha=0.15,
                   label=f"SD phase (lambda {res['config']['sd_lambda']:g})")
    ax.set(xlabel="epoch", ylabel='D loss w.r.t. the "real" label (validation)', title=_title(res))
    ax.legend(fontsize=8)
    fig.tight_layout()
    data.atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    plt.close(fig)


def plot_table4(agg, paper, path, title):
    """A heat map of Table 4: one square per (rare digit, factor, model) column and digit row, the paper's
    letters above ours (seed 0), coloured by letter (LETTER_COLOURS); white: not run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = [(k, f, m) for k in (1, 2) for f in data.FACTORS for m in MODEL_ORDER]
    digits = MNIST_CLASSES + ("Total",)
    fig, axes = plt.subplots(2, 1, figsize=(11, 5.6))
    for ax, who in zip(axes, ("the paper", "ours")):
        for j, (k, f, m) in enumerate(cols):
            for i, d in enumerate(digits):
                letter = paper[(k, f, d, m)]["letter"] if who == "the paper" else _our_letter(agg, k, f, d, m)
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
    short = {"L": "learned", "M": "memorised", "n": "too few samples", "b": "broken baseline", "?": "other direction",
             "-": "z undefined", "i": "inconclusive", "x": "no readable counts"}
    fig.legend(handles + [plt.Rectangle((0, 0), 1, 1, fc="white", ec="#999999")],
               [f"{k}: {short[k]}" for k in LETTER_COLOURS] + ["not run"], loc="lower center", ncol=9, fontsize=7,
               frameon=False)
    fig.suptitle(f"{title}; each group of 4 columns: {' / '.join(MODEL_ORDER)}", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    data.atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=80))
    plt.close(fig)


def plot_samples(runs_dir, models, factor, rare, seed, path, n=8):
    """A Figure-2-like grid: the first n x n D_r samples of each model (samples.npz under runs_dir, which
    is never committed), one panel per model. Returns the models drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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


def figures(results, out_dir, paper=None, runs_dir=None, reading=Reading()):
    """The study's figures from its result files: Figure 3 of the GAN and the GAN-SD (colour, rare 1, seed
    0), the Table 4 heat map beside the paper's (with `paper`), and, when `runs_dir` holds the samples,
    a Figure-2-like grid of D_r samples per model. Returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for res in results:
        if res["model"] in ("GAN", "GAN-SD") and res.get("disc_loss") and (res["factor"], res["rare"], res["seed"],
                                                                            res["dataset"]) == ("colour", 1, 0, "mnist"):
            path = os.path.join(out_dir, f"figure3-{res['run_name']}-colour-rare1.png")
            plot_disc_loss(res, path)
            written.append(path)
    if paper is not None:
        path = os.path.join(out_dir, f"table4-{reading.summary}.png")
        plot_table4(aggregate(results, reading), paper, path, f"Table 4 under the {reading.summary} reading")
        written.append(path)
    if runs_dir:
        path = os.path.join(out_dir, "samples-colour-rare1.png")
        models = [("VAE", "vae"), ("GAN", "gan"), ("GAN-SD", "gan-sd"), ("DM", "ddpm")]
        if plot_samples(runs_dir, models, "colour", 1, 0, path):
            written.append(path)
    return written


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
    a("--summary", default="ours", help="Table 4's rule: ours (L/M/?/-/n/b), paper (binary L/M, as the "
      "paper's Table 4), equivalence (L only when TOST shows it) or readable (ours, on the samples the "
      "label oracle reads confidently) (default: ours)")
    a("--baseline-dev", type=float, default=BASELINE_DEV, help=f"a class whose D_u share of the factor is "
      f"further than this from 0.5 gets 'b' (broken baseline), never L or M, in (0, 0.5] (default: "
      f"{BASELINE_DEV:g})")
    a("--confidence", type=float, default=CONFIDENT, help=f"the readable reading keeps samples the label "
      f"oracle reads with p > this; one of {', '.join(f'{t:g}' for t in CONFIDENCE_GRID)} (default: "
      f"{CONFIDENT:g})")
    a("--factor-confident", action="store_true", help=f"the readable reading also requires the factor "
      f"oracle's P(f = 1) > {FACTOR_CONFIDENT:g} or < {1 - FACTOR_CONFIDENT:.1g} (default: off)")
    a("--out-dir", help="write tables.{txt,md,tex,json}, table CSVs and rows.csv here (default: print only)")
    a("--paper", help="the paper's Tables 1, 2, 4 as data (results/paper/paper-cells.csv): print, and write "
      "to --out-dir, the agreement of our Table 4 with the paper's under every reading and Tables 1-2 side "
      "by side (default: none)")
    a("--figures", help="write the figures here: Figure 3 (GAN, GAN-SD), the Table 4 heat map beside the "
      "paper's (with --paper), and with --runs a grid of D_r samples per model (default: none)")
    a("--runs", help="with --figures: the runs folder whose samples.npz the sample grid is drawn from "
      "(default: none)")
    a("--data-root", help="MNIST root for the oracles (default: $RGF_DATA_ROOT, else ./data)")
    a("--cache-dir", help="oracle cache (default: <data-root>/rgf-cache)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    a("--data-seed", type=int, default=0, help="data seed of the oracles' D_u (default: 0)")
    a("--smoke", action="store_true", help="audit with the smoke oracles (tests only; default: off)")
    a("--oracles", default="robust", choices=oracles.RECIPES, help="audit: the oracles' recipe, robust (ours) or "
      "paper (default: robust)")
    return p


def _reading(args):
    """The reading of the command line, checked: one line and exit 2 for a bad value."""
    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha {args.alpha:g} out of range; accepted: 0 < alpha < 1")
    if args.min_n < 0:
        raise ValueError(f"--min-n {args.min_n} out of range; accepted: an integer >= 0 (0 = the paper's rule)")
    if not 0 < args.margin < 1:
        raise ValueError(f"--margin {args.margin:g} out of range; accepted: a proportion in (0, 1)")
    if args.summary not in SUMMARIES:
        raise ValueError(f"--summary {args.summary!r} not understood; accepted: {', '.join(SUMMARIES)}")
    if not 0 < args.baseline_dev <= 0.5:
        raise ValueError(f"--baseline-dev {args.baseline_dev:g} out of range; accepted: 0 < d <= 0.5")
    if args.confidence not in CONFIDENCE_GRID:
        raise ValueError(f"--confidence {args.confidence:g} not available; accepted: "
                         f"{', '.join(f'{t:g}' for t in CONFIDENCE_GRID)} (result.json keeps these)")
    return Reading(args.test, args.correction, args.alpha, args.min_n, args.margin, args.summary,
                   args.baseline_dev, args.confidence, args.factor_confident)


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
                        args.cache_dir, args.device, args.data_seed, args.smoke, reading.min_n, args.oracles)
            print(format_rows(_rows(res, reading), _title(res), reading.confidence))
            print(format_quality(res["quality"], res["classes"]))
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
            paper = load_paper(args.paper) if args.paper else None
            if paper:
                compare(results, paper, reading, args.out_dir)
            if args.figures:
                for path in figures(results, args.figures, paper, args.runs, reading):
                    print(f"wrote {path}")
    except (ValueError, FileNotFoundError) as e:
        data.fail(str(e))


if __name__ == "__main__":
    main()
