"""The readings of a z-table beyond the paper's, and the statistics they rest on.

Eq. 1 and the paper's L/M rule are ztest.py's. This module holds what we add to them (docs/readings.md
says why): the two-sample test, Cohen's h, the equivalence test (TOST), the Holm and Benjamini-Hochberg
corrections, our two letters "n" (too few samples) and "b" (broken baseline), Table 4's four summary
rules, the readable reading's sample filter, and the `Reading` that names a table's choices.
ztest.py computes the rows; nothing here imports it.
"""
import collections
import math

import numpy as np
from scipy.stats import norm

import data

# --------------------------------------------------------------------------- configuration
ALPHA = 0.05                                      # section 4: L when p > 0.05
TESTS = ("one-sample", "two-sample", "calibrated")   # one-sample = the paper's eq. 1
CORRECTIONS = ("none", "holm", "bh")              # none = the paper's per-class p-values
MIN_N = data.MIN_N     # ours: below 30 samples of a class in either model, "too few samples" (0 = the paper)
MARGIN = 0.1           # ours: the equivalence margin of TOST, in proportion (see tost)
BASELINE_DEV = 0.25    # ours: |P_u - 0.5| > 0.25 in a class: its D_u baseline is broken, letter "b"
CONFIDENT = 0.9        # ours: a sample is readable when the label oracle gives its class p > 0.9
# The readable reading can be asked for at these label-oracle thresholds (result.json keeps the counts
# at each), optionally also requiring a confident factor oracle (P(f = 1) > 0.9 or < 0.1).
CONFIDENCE_GRID = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
FACTOR_CONFIDENT = 0.9
UNFIT = 0.8            # ours: the rare digit of a D_r model whose fit (0 = real plain digits, 1 = real ones with
                       # the factor, as every rare digit of D_r) is clearly below 0.8, its upper 95% bound under
                       # 0.8, did not fit its data: letter "u" (docs/readings.md)
Z95 = 1.959963984540054
# The calibrated test's training noise: tau^2, the between-seed variance of a class's factor share P,
# pooled over every null pair of results/quick (17 pairs, 170 classes) on all samples and on the readable
# ones; `python -m study.calibration results/quick` measures it again (docs/readings.md).
TAU2 = {"all": 0.000312, "readable": 0.000555}
SUMMARIES = ("ours", "paper", "equivalence", "readable", "calibrated", "morphometric")   # Table 4's rules
SUFFIX = {"readable": "_read", "calibrated": "_cal", "morphometric": "_morph"}   # their row keys (result_rows)
# The study's answer (README.md, "Which reading is the answer"): the calibrated reading on colour, the
# morphometric one on the stroke factors. Not a rule of its own: a table resolves it per factor (answer_for).
ANSWER = "answer"
# How result files are read into tables: the test, the correction, alpha, the minimum count, the
# equivalence margin, Table 4's summary rule, the baseline threshold and the readable reading's
# thresholds, and the unfit threshold (None: off). The defaults are ours; the paper's are
# Reading(min_n=0, summary="paper").
Reading = collections.namedtuple(
    "Reading", "test correction alpha min_n margin summary baseline_dev confidence factor_confident unfit",
    defaults=("one-sample", "none", ALPHA, MIN_N, MARGIN, "ours", BASELINE_DEV, CONFIDENT, False, UNFIT))
READ_KEYS = ("n_u", "k_u", "P_u", "n_r", "k_r", "P_r", "z", "p_adj", "verdict")   # the readable reading's


# --------------------------------------------------------------------------- checked arguments
def check_count(name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)) \
            or not math.isfinite(v) or v != int(v) or v < 0:
        raise ValueError(f"{name} must be an integer count >= 0, got {v!r}")
    return int(v)


def check_prop(name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)) \
            or not 0.0 <= v <= 1.0:      # also rejects nan
        raise ValueError(f"{name} must be a proportion in [0, 1], got {v!r}")
    return float(v)


def check_choice(name, v, accepted):
    if v not in accepted:
        raise ValueError(f"{name} must be one of {', '.join(map(str, accepted))}, got {v!r}")
    return v


def checked_counts(counts, rare, classes, test, correction, alpha, min_n, baseline_dev):
    """The options of ztest.rows_from_counts checked, and its counts as lists nu, ku, nr, kr of len(classes)."""
    check_choice("test", test, TESTS)
    if isinstance(min_n, bool) or not isinstance(min_n, (int, np.integer)) or min_n < 0:
        raise ValueError(f"min_n must be an integer >= 0, got {min_n!r}")
    check_choice("correction", correction, CORRECTIONS)
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if baseline_dev is not None and not (isinstance(baseline_dev, (int, float)) and 0 < baseline_dev <= 0.5):
        raise ValueError(f"baseline_dev must be in (0, 0.5] or None, got {baseline_dev!r}")
    C = len(classes)
    if isinstance(rare, bool) or not isinstance(rare, (int, np.integer)) or not 0 <= rare < C:
        raise ValueError(f"rare class must be an integer in 0..{C - 1}, got {rare!r}")
    try:
        lists = [counts[w][a] for w, a in (("u", "n"), ("u", "k"), ("r", "n"), ("r", "k"))]
    except (TypeError, KeyError, IndexError):
        raise ValueError(f"counts must be {{'u': {{'n': [...], 'k': [...]}}, 'r': {{...}}}}, got "
                         f"{type(counts).__name__} {str(counts)[:40]}") from None
    if not all(isinstance(v, (list, tuple, np.ndarray)) for v in lists):
        raise ValueError(f"counts' n and k must be lists of counts, got {', '.join(type(v).__name__ for v in lists)}")
    out = [[check_count(f"{w}.{a}[{i}]", v) for i, v in enumerate(vals)]
           for (w, a), vals in zip((("u", "n"), ("u", "k"), ("r", "n"), ("r", "k")), lists)]
    for vals in out:
        if len(vals) != C:
            raise ValueError(f"counts need {C} classes, got {len(vals)}")
    return out


# --------------------------------------------------------------------------- statistics beyond eq. 1
def z_two_sample(k_r, n_r, k_u, n_u, tau2=0.0):
    """Pooled two-proportion z-test (beyond the paper): also counts the sampling error of P_u, which
    eq. 1 treats as exact. z = (P_r - P_u) / sqrt(P (1 - P) (1/n_r + 1/n_u)), P = (k_r + k_u) / (n_r + n_u).
    The calibrated test adds each model's training noise, 2 tau^2, to that variance (tau^2: the
    between-seed variance of P, TAU2; study/calibration.py measures it). NaN when a sample is empty or
    the variance is 0."""
    k_r, n_r, k_u, n_u = (check_count(a, v) for a, v in (("k_r", k_r), ("n_r", n_r), ("k_u", k_u), ("n_u", n_u)))
    for k, n, a in ((k_r, n_r, "k_r"), (k_u, n_u, "k_u")):
        if k > n:
            raise ValueError(f"{a}={k} exceeds its sample size {n}")
    if n_r == 0 or n_u == 0:
        return math.nan
    p = (k_r + k_u) / (n_r + n_u)
    var = p * (1 - p) * (1 / n_r + 1 / n_u) + 2 * tau2
    return (k_r / n_r - k_u / n_u) / math.sqrt(var) if var > 0 else math.nan


def cohens_h(p_r, p_u):
    """Effect size h = 2 asin(sqrt(P_r)) - 2 asin(sqrt(P_u)) (Cohen 1988); NaN when either is undefined."""
    if not (math.isfinite(p_r) and math.isfinite(p_u)):
        return math.nan
    return 2 * math.asin(math.sqrt(check_prop("p_r", p_r))) - 2 * math.asin(math.sqrt(check_prop("p_u", p_u)))


def tost(k_r, n_r, k_u, n_u, margin=MARGIN, test="one-sample", tau2=0.0):
    """Equivalence: the p-value of two one-sided tests (TOST, Schuirmann 1987) of H0: |P_r - P_u| >=
    margin against H1: |P_r - P_u| < margin. With d = P_r - P_u and its standard error se, the two
    one-sided p-values are sf((d + margin) / se) and cdf((d - margin) / se); TOST's p is the larger.
    p <= alpha *shows* that the factor's share moved by less than the margin: learning shown, which
    "p > 0.05" of eq. 1 ("not shown to differ") is not. NaN when se is 0 or undefined.
    one-sample: the se of eq. 1, sqrt(P_u (1 - P_u) / n_r), P_u taken as known as eq. 1 does.
    two-sample: the unpooled se sqrt(P_r (1 - P_r) / n_r + P_u (1 - P_u) / n_u); calibrated: that, + 2 tau^2.
    The margin 0.1 is Cohen's h = 0.20 at P = 0.5, his "small" effect (docs/readings.md)."""
    k_r, n_r, k_u, n_u = (check_count(a, v) for a, v in (("k_r", k_r), ("n_r", n_r), ("k_u", k_u), ("n_u", n_u)))
    if not (isinstance(margin, (int, float)) and 0 < margin < 1):
        raise ValueError(f"margin must be in (0, 1), got {margin!r}")
    check_choice("test", test, TESTS)
    if n_r == 0 or n_u == 0:
        return math.nan
    p_r, p_u = k_r / n_r, k_u / n_u
    var = p_u * (1 - p_u) / n_r if test == "one-sample" else p_r * (1 - p_r) / n_r + p_u * (1 - p_u) / n_u
    var += 2 * tau2 if test == "calibrated" else 0.0
    if var <= 0:
        return math.nan
    d, se = p_r - p_u, math.sqrt(var)
    return float(max(norm.sf((d + margin) / se), norm.cdf((d - margin) / se)))


def adjust_p(ps, method="none"):
    """Multiple-testing correction over a family of p-values (NaN entries are left out of the family).
    holm: step-down, p_(i) * (m - i + 1), made monotone; bh: Benjamini-Hochberg, p_(i) * m / i, made
    monotone from the top. Adjusted values are capped at 1."""
    check_choice("correction", method, CORRECTIONS)
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


# --------------------------------------------------------------------------- our letters, Table 4's summaries
def our_letter(n, min_n, p_u, baseline_dev, fit_hi=None, unfit=None):
    """Our three rules, which come before the paper's and never give L or M: "n" (too few samples) when
    n = min(n_u, n_r) < min_n, where p > 0.05 is almost certain and no evidence of learning; "b" (broken
    baseline) when |P_u - 0.5| > baseline_dev: eq. 1 measures P_r against P_u, and the paper's premise
    (its Tables C.3-C.4) is a D_u model that draws the factor in about half of every class; "u" (unfit)
    when fit_hi, the upper 95% bound of the rare digit's fit in the D_r model (fit_bounds), is below
    `unfit`: every rare digit of D_r has the factor, so a D_r model clearly short of that did not fit its
    data, and its rare digit can neither memorise nor learn (the caller passes fit_hi for the rare digit
    only). None when none applies; min_n = 0, baseline_dev = None and unfit = None switch them off."""
    if n is not None and n < min_n:
        return "n"
    if baseline_dev is not None and p_u is not None and math.isfinite(p_u) and abs(p_u - 0.5) > baseline_dev:
        return "b"
    if unfit is not None and fit_hi is not None and math.isfinite(fit_hi) and fit_hi < unfit:
        return "u"
    return None


def fit_bounds(k, n):
    """The rare digit's fit read from its D_r counts (colour: its share of the factor, the factor oracle
    being exact on real digits): (k / n, lower, upper), a 95% normal interval as the quality report
    prints it; nans when n = 0."""
    if not n:
        return math.nan, math.nan, math.nan
    p = k / n
    half = Z95 * math.sqrt(p * (1 - p) / n)
    return p, p - half, p + half


def summary_letter(row, how="ours", alpha=ALPHA, min_n=MIN_N):
    """One cell of Table 4 under the four readings of the paper's question:
    ours (default):  the row's verdict, L / M / ? / - / n (too few samples) / b (broken baseline);
    paper:           the paper's binary rule, L when p > alpha, else M (a significant deviation in either
                     direction and an undefined z count as M), and M too below min_n; --min-n 0 gives
                     the paper's Table 4 exactly;
    equivalence:     L only when TOST shows |P_r - P_u| < margin; M / ? / - / n / b as ours; "i"
                     (inconclusive) when neither equivalence nor a difference is shown;
    readable:        ours, computed on the samples the label oracle reads confidently (verdict_read;
                     "x" when the result has no such counts);
    calibrated:      ours on those samples with the calibrated test, the training noise counted
                     (verdict_cal);
    morphometric:    ours on the morphometric call of the stroke instead of the factor oracle's, on the
                     readable samples, with the calibrated test (verdict_morph; "x" on colour and on
                     results that predate it)."""
    check_choice("summary", how, SUMMARIES)
    if how == "ours":
        return row["verdict"]
    if how in SUFFIX:
        return row.get("verdict" + SUFFIX[how]) or "x"
    few = min(row["n_u"], row["n_r"]) < min_n
    if how == "paper":
        return "L" if not few and math.isfinite(row["p_adj"]) and row["p_adj"] > alpha else "M"
    if row["verdict"] != "L":
        return row["verdict"]
    return "L" if math.isfinite(row["p_eq"]) and row["p_eq"] <= alpha else "i"


def answer_for(factor):
    """The reading that answers the study's question on `factor`: calibrated on colour (cars too), the
    morphometric reading on thin, thick, swell and fracture."""
    return "calibrated" if factor == "colour" else "morphometric"


def resolve(summary, factor):
    """The summary rule a cell of `factor` is read with: `summary`, or for "answer" answer_for(factor)."""
    return answer_for(factor) if summary == ANSWER else summary


# --------------------------------------------------------------------------- the readable reading
def readable_masks(p_label, p_factor):
    """The samples the readable reading keeps, {key: bool mask [N]}: those the label oracle reads with
    p > t, for every t of CONFIDENCE_GRID ("0.9"), and the same also requiring a confident factor
    oracle, P(f = 1) > 0.9 or < 0.1 ("0.9+f"). p_label [N, C], p_factor [N]."""
    conf = np.asarray(p_label).max(1)
    sure = np.abs(np.asarray(p_factor) - 0.5) > FACTOR_CONFIDENT - 0.5
    return {f"{t:g}{suffix}": keep for t in CONFIDENCE_GRID
            for suffix, keep in (("", conf > t), ("+f", (conf > t) & sure))}


def counts_of(res, reading):
    """The counts a reading works on: {"u", "r"} of the readable reading's threshold, or None when the
    result predates that reading (or the threshold is not in CONFIDENCE_GRID)."""
    key = f"{reading.confidence:g}" + ("+f" if reading.factor_confident else "")
    got = res.get("readable", {})
    return {w: got[w][key] for w in ("u", "r")} if all(key in got.get(w, {}) for w in ("u", "r")) else None


def taus_of(res):
    """The tau^2 of each reading ("all", "readable", "morph") a result is read with: its "tau2_cell"
    (study/calibration.attach_tau2: per model and factor, or pooled; a null pair's, held out), else TAU2,
    the committed pooled estimate; the morphometric reading without its own borrows the readable one."""
    tau = {**TAU2, **(res.get("tau2_cell") or {})}
    tau.setdefault("morph", tau["readable"])
    return tau


def extra_readings(res, reading):
    """The readings a result's rows carry beside the one on all samples: [(row-key suffix, counts, test,
    tau^2)] for the readable reading (the reading's own test), the calibrated one and, on a stroke
    factor, the morphometric one (study/morphometry.py), each on the readable samples, with the tau^2 of
    taus_of (a result.json's "tau2" records the one its run was made with)."""
    read, tau = counts_of(res, reading), taus_of(res)
    out = [("_read", read, reading.test, tau["readable"]), ("_cal", read, "calibrated", tau["readable"])]
    morph = (res.get("morphometric") or {}).get("counts")
    out.append(("_morph", morph, "calibrated", tau["morph"]))
    return [x for x in out if x[1] is not None]


# --------------------------------------------------------------------------- the command line's reading
def add_options(p):
    """The reading options of ztest.py's command line."""
    a = p.add_argument
    a("--test", default="one-sample", choices=TESTS, help="one-sample = eq. 1 (default: one-sample)")
    a("--correction", default="none", choices=CORRECTIONS, help="across classes (default: none)")
    a("--alpha", type=float, default=ALPHA, help=f"significance level (default: {ALPHA})")
    a("--min-n", type=int, default=MIN_N, help=f"a class with fewer samples in either model is 'too few "
      f"samples' (n), never L; 0 = the paper's rule (default: {MIN_N})")
    a("--margin", type=float, default=MARGIN, help=f"equivalence margin of TOST, in proportion, in (0, 1) "
      f"(default: {MARGIN})")
    a("--summary", default="ours", help="Table 4's rule: ours (L/M/?/-/n/b/u), paper (binary L/M, as the "
      "paper's Table 4), equivalence (L only when TOST shows it), readable (ours, on the samples the "
      "label oracle reads confidently), calibrated (readable, with the training noise in the test) or "
      "morphometric (calibrated, on the stroke's measured call), or answer (the study's answer: calibrated "
      "on colour, morphometric on the stroke factors) (default: ours)")
    a("--unfit", type=float, default=UNFIT, help=f"the rare digit whose D_r fit has its upper 95%% bound below "
      f"this gets 'u' (unfit), never L or M; 0 = off (default: {UNFIT:g})")
    a("--baseline-dev", type=float, default=BASELINE_DEV, help=f"a class whose D_u share of the factor is "
      f"further than this from 0.5 gets 'b' (broken baseline), never L or M, in (0, 0.5] (default: "
      f"{BASELINE_DEV:g})")
    a("--confidence", type=float, default=CONFIDENT, help=f"the readable reading keeps samples the label "
      f"oracle reads with p > this; one of {', '.join(f'{t:g}' for t in CONFIDENCE_GRID)} (default: "
      f"{CONFIDENT:g})")
    a("--factor-confident", action="store_true", help=f"the readable reading also requires the factor "
      f"oracle's P(f = 1) > {FACTOR_CONFIDENT:g} or < {1 - FACTOR_CONFIDENT:.1g} (default: off)")


def from_args(args):
    """The reading of the command line, checked: a ValueError naming the bad value."""
    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha {args.alpha:g} out of range; accepted: 0 < alpha < 1")
    if args.min_n < 0:
        raise ValueError(f"--min-n {args.min_n} out of range; accepted: an integer >= 0 (0 = the paper's rule)")
    if not 0 < args.margin < 1:
        raise ValueError(f"--margin {args.margin:g} out of range; accepted: a proportion in (0, 1)")
    if args.summary not in SUMMARIES + (ANSWER,):
        raise ValueError(f"--summary {args.summary!r} not understood; accepted: {', '.join(SUMMARIES + (ANSWER,))}")
    if not 0 < args.baseline_dev <= 0.5:
        raise ValueError(f"--baseline-dev {args.baseline_dev:g} out of range; accepted: 0 < d <= 0.5")
    if not 0 <= args.unfit <= 1:
        raise ValueError(f"--unfit {args.unfit:g} out of range; accepted: 0 <= u <= 1 (0 = off)")
    if args.confidence not in CONFIDENCE_GRID:
        raise ValueError(f"--confidence {args.confidence:g} not available; accepted: "
                         f"{', '.join(f'{t:g}' for t in CONFIDENCE_GRID)} (result.json keeps these)")
    return Reading(args.test, args.correction, args.alpha, args.min_n, args.margin, args.summary,
                   args.baseline_dev, args.confidence, args.factor_confident, args.unfit or None)
