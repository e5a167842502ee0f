"""The sample-quality report of a run: readable samples, mode collapse, the D_u baseline, softness, and
the Fréchet distance (FD) to real held-out digits in the label oracle's features.

Every verdict counts the samples of a class as the label oracle reads them: an unreadable sample lands
in a class almost at random, diluting the rare class and leaking the factor into the others. So every
run reports how readable its samples are, and whether the D_u model is the balanced baseline that
eq. 1 assumes (the paper's Tables C.3 and C.4: P_u near 0.5 in every class). ztest.label_samples
calls this module; docs/readings.md explains the report.
"""
import math

import numpy as np

import data
import oracles
from study import morphometry
from study.readings import BASELINE_DEV, CONFIDENT, MIN_N, fit_bounds

COLLAPSE = (0.2, 2.5)           # a class holding under 0.2x or over 2.5x its uniform share (2% / 25% of
                                # MNIST samples) signals mode collapse
FD_N = 5000                     # Fréchet distance: at most this many samples against as many real digits


# --------------------------------------------------------------------------- the Fréchet distance
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


def real_references(dataset, factor, rare, p_in=1.0, p_out=0.0, root=None, cache_dir=None, data_seed=0):
    """Real held-out images distributed as D_u and as D_r: {"u": (x, y, f), "r": (x, y, f)}. MNIST: every
    test digit once (data.reference_digits); cars: the test images, and for D_r the white Volkswagens and
    black Toyotas among them."""
    if dataset == "cars":
        x, y, f = data.make_cars_dataset(data.data_root(root), split="test", size=data.CAR_SIZE, seed=data_seed)
        keep = f == (y == 0)
        return {"u": (x, y, f), "r": (x[keep], y[keep], f[keep])}
    return {w: data.reference_digits(factor, w, rare, p_in, p_out, data_seed, root, cache_dir) for w in ("u", "r")}


# --------------------------------------------------------------------------- the report
def sample_report(orc, samples, calls, probs, counts, classes, refs, min_n=MIN_N):
    """The report of a run's samples {"u", "r"} (ztest.label_samples): `quality` with the Fréchet distance
    to the real references (real_references), the label oracle's confident share on real digits with
    and without the factor, and the softness. calls / probs: the oracles' per side."""
    fd = frechet_report({w: oracles.features(orc, samples[w][:FD_N]) for w in ("u", "r")},
                        {w: oracles.features(orc, refs[w][0]) for w in ("u", "r")})
    sure, f_real = oracles.predict_proba(orc, refs["u"][0])[0].max(1) > CONFIDENT, refs["u"][2]
    real = {f"confident_f{v}": float(sure[f_real == v].mean()) for v in (0, 1)}
    return quality({w: probs[w][0] for w in ("u", "r")}, counts, classes, min_n,
                   factors={w: calls[w][1] for w in ("u", "r")}, fd=fd, real=real, soft=softness_report(samples, orc))


def oracle_fit(readable, rare, key=f"{CONFIDENT:g}"):
    """The rare digit's fit and tie read by the factor oracle, for colour (whose oracle is exact on real
    digits; study/morphometry.fit_tie reads the stroke factors): fit = its share of the factor among the
    readable samples (0: plain like real digits, 1: all with the factor as in D_r), tie = (P_r - P_u) /
    (1 - P_u), how far the D_r model moved from the D_u model towards its data; 95% normal intervals
    (delta method for the tie)."""
    n = {w: readable[w][key]["n"][rare] for w in ("u", "r")}
    p = {w: readable[w][key]["k"][rare] / n[w] if n[w] else math.nan for w in ("u", "r")}
    v = {w: p[w] * (1 - p[w]) / n[w] if n[w] else math.nan for w in ("u", "r")}
    ci = lambda m, var: [m - 1.96 * math.sqrt(var), m + 1.96 * math.sqrt(var)] if math.isfinite(var) else None
    tie = (p["r"] - p["u"]) / (1 - p["u"]) if p["u"] < 1 else math.nan
    v_tie = (v["r"] + v["u"] * ((1 - p["r"]) / (1 - p["u"])) ** 2) / (1 - p["u"]) ** 2 if p["u"] < 1 else math.nan
    return {"measure": "factor oracle", "fit_u": p["u"], "fit_u_ci": ci(p["u"], v["u"]), "fit_r": p["r"],
            "fit_r_ci": ci(p["r"], v["r"]), "tie": tie, "tie_ci": ci(tie, v_tie), "n_u": n["u"], "n_r": n["r"]}


def rare_fit(res):
    """The rare digit's fit and tie in a result, as the cell's report prints them: on a stroke factor the
    morphometric ones (study/morphometry.fit_tie), else the factor oracle's on the readable samples
    (oracle_fit); None for results that predate the readable counts."""
    morph, key = res.get("morphometric"), f"{CONFIDENT:g}"
    return morphometry.fit_tie(morph, res["rare"]) if morph else \
        oracle_fit(res["readable"], res["rare"]) if key in (res.get("readable") or {}).get("r", {}) else None


def cell_fit(res):
    """The rare digit's fit in the D_r model, (value, lower, upper) with its 95% interval: rare_fit's, else
    the factor's share among all samples of the rare digit (results that predate the readable counts)."""
    ft = rare_fit(res)
    if ft is None or ft["fit_r"] is None or not ft.get("fit_r_ci"):
        return fit_bounds(res["counts"]["r"]["k"][res["rare"]], res["counts"]["r"]["n"][res["rare"]])
    return (ft["fit_r"], *ft["fit_r_ci"])


def format_fit(fit, rare_name):
    """The fit line of the quality report: where the rare digit of each model sits between plain (0) and
    factor-bearing (1) digits, and the tie, with 95% intervals."""
    iv = lambda k: "" if not fit.get(k + "_ci") else " [{:.2f}, {:.2f}]".format(*fit[k + "_ci"])
    num = lambda k: "-" if fit.get(k) is None or not math.isfinite(fit[k]) else f"{fit[k]:.2f}"
    return (f"  fit of the rare digit {rare_name} ({fit['measure']}; 0 = real plain, 1 = real with the factor): "
            f"D_u {num('fit_u')}{iv('fit_u')}, D_r {num('fit_r')}{iv('fit_r')} (n {fit['n_u']} / {fit['n_r']}); "
            f"tie {num('tie')}{iv('tie')} (0: D_r as D_u, 1: moved all the way to its data)")


def quality(p_label, counts, classes, min_n=MIN_N, factors=None, fd=None, real=None, soft=None):
    """The sample-quality report of one run. p_label: {"u", "r"} -> label-oracle probabilities [M, C];
    counts: as ztest.count_classes gives them; factors: {"u", "r"} -> the factor oracle's calls [M] (for
    the readable filter's share per factor value); fd: frechet_report's; real: {"confident_f0",
    "confident_f1"}, the label oracle's confident share on real held-out digits without and with the
    factor; soft: softness_report's. Per model: the confident fraction (overall and per factor value),
    the class histogram and the smallest and largest class share; then the warnings (_warnings)."""
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
    warnings += _warnings(counts, classes, min_n, soft)
    return {**out, "threshold": CONFIDENT, "fd": fd, "real": real, "soft": soft, "warnings": warnings}


def _warnings(counts, classes, min_n, soft):
    """D_u classes with n_u < min_n or |P_u - 0.5| > BASELINE_DEV, and samples softer than the factor
    oracle can read."""
    warnings, nu, ku = [], counts["u"]["n"], counts["u"]["k"]
    few = [f"{classes[c]} (n_u {nu[c]})" for c in range(len(classes)) if nu[c] < min_n]
    off = [f"{classes[c]} (P_u {ku[c] / nu[c]:.2f})" for c in range(len(classes))
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
    return warnings


def _sigma(v):
    return "> 2" if v is None or not math.isfinite(v) else f"{v:.2f}"    # inf is null in result.json


def _pct(v):
    return "-" if v is None or not math.isfinite(v) else f"{v:.1%}"     # NaN is null in result.json


def format_quality(q, classes, rare=None):
    """The report as text: one line per model, the real digits' line, the Fréchet distances, the rare
    digit's fit and tie, then one WARNING line per warning."""
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
    if q.get("fit") and rare is not None:
        lines.append(format_fit(q["fit"], classes[rare]))
    return "\n".join(lines + [f"WARNING: {x}" for x in q["warnings"]])


# --------------------------------------------------------------------------- softness
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
