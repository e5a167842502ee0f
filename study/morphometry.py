"""The morphometric reading of the stroke factors: thin, thick, swell and fracture called from the
stroke itself, with no learned oracle (paper, sections 3 and 5.1; the factors of Morpho-MNIST).

Each digit is measured as Morpho-MNIST measures it (Castro et al. 2019, steps 1-4 of
shared/reference/morpho-ops.md): upscaled 4x, binarised at half its range, skeletonised with the
medial axis. From that: stroke thickness (twice the mean medial-axis distance), area, skeleton length,
extent (the larger side of the bounding box), ink (grey mass near the stroke, which a blur does not
change), the largest inscribed half-width r_max (also at a stricter level, r_max_hi), the lower
quartile of the medial-axis distance d25, the swell's bulge r_max / d25, and the number of connected
pieces (fractures cut strokes). All lengths are in low-resolution pixels.

The call f in {0, 1} is a per-class linear discriminant (LDA, numpy only) on two or three of those
measures, calibrated on the real held-out digits of the val split, clean and blurred (a Gaussian of
sigma drawn in [0, 1.2], as oracles.blur), so that a soft sample is not read as a factor. The
calibration also keeps, per class, the real plain and factor-bearing means of every measure: the ends
of the fit, (m_model - m_plain) / (m_factor - m_plain), of the factor's main measure. The calibration
is cached as JSON under <cache>/morphometry/ (cached_calibration).

The reading of a run (`reading`, issue 28): the D_u and D_r models' samples that the label oracle reads
with p > 0.9 (the readable reading's samples) are measured and called; per class, the counts that eq. 1
takes (a morphometric P_u and P_r), the measures' means and sds, and the real digits' ends. From those
alone, `fit_tie`: the rare digit's fit (0 = real plain digits of the class, 1 = real factor-bearing
ones) in each model, and the tie (how far the D_r model moved from the D_u model's towards 1).

    python -m study.morphometry --validate [--data-root DIR] [--n 2000]   # the call on test digits,
                                                                          # clean and blurred
    python -m study.morphometry --add runs/ddpm/thick-rare1-seed1         # add the reading to a run
    python -m study.morphometry --fit runs/ddpm/thick-rare1-seed1 --factor thick --rare 1
                                                     # one model's fit per class (curves of the fit)
    python -m study.morphometry --add runs/gan/thick-rare1-seed0 [--runs DIR] [--device cpu]
                                          # the reading added to a finished run from its samples.npz
"""
import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time

import numpy as np
from scipy import ndimage as ndi

from study import morpho

# --- configuration ------------------------------------------------------------------------------
STROKE_FACTORS = ("thin", "thick", "swell", "fracture")
MEASURES = ("thickness", "area", "length", "extent", "width", "height", "ink", "r_max", "r_max_hi", "d25",
            "bulge", "components")
COUNTS = ("components",)                 # used as they are; every other measure enters as its log
CALL_MEASURES = {"thin": ("thickness", "ink", "extent"),      # eroded: thinner, less ink, smaller
                 "thick": ("thickness", "extent"),            # dilated: thicker and larger
                 "swell": ("r_max", "r_max_hi", "d25"),       # one wide disc on a thin stroke
                 "fracture": ("components", "length")}        # cut strokes: more pieces, less skeleton
MAIN = {"thin": "thickness", "thick": "thickness", "swell": "bulge", "fracture": "components"}
HI_LEVEL = 0.65          # r_max_hi: the inscribed disc at 65% of the range (a blurred loop drops out)
INK_MARGIN = 3           # ink: grey within 3 px of the binarised digit (not background noise)
BLUR_MAX, BLUR_RADIUS = 1.2, 6          # calibration blur: sigma ~ U[0, 1.2]; oracles.blur's kernel
CAL_COPIES = 2                          # blurred copies of each calibration digit, beside the clean one
CAL_SEED = 9_281                        # the calibration's blur draws
RIDGE = 1e-3                            # LDA: shrinkage of the pooled covariance (standardised units)
SIGMAS = (0.0, 0.5, 0.8, 1.0)           # the validation's blur levels
TARGETS = {0.0: 0.95, 1.0: 0.90}        # agreement with the truth the call must reach, clean / sigma 1
CAL_VERSION = "morphometry-cal/2"       # the calibration cache's version: bump when measure or the call change
SMOKE_CAL = 300                         # smoke calibration: the first 300 val digits, one blurred copy each
FORMAT = "rgf-morpho/1"                 # result.json's "morphometric" block
Z95 = 1.959963984540054                 # the two-sided 95% normal quantile of the fit's intervals
NOUN = {"thin": "thin", "thick": "thick", "swell": "swollen", "fracture": "fractured"}


# --- input: uint8 digits to grey, and the blur the calibration and validation apply --------------
def grey(images):
    """uint8 [N,28,28] or [N,C,28,28] (C = 1 or 3) -> uint8 [N,28,28], the max over channels (a
    coloured digit carries its stroke in one channel)."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0..255), got {x.dtype}")
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[2:] == (28, 28):
        return x.max(axis=1)
    if x.ndim == 3 and x.shape[1:] == (28, 28):
        return x
    raise ValueError(f"images must be [N,28,28] or [N,C,28,28] with C in (1, 3), got {list(x.shape)}")


def blur(images, sigma):
    """Gaussian blur of uint8 digits, one sigma per image (a scalar or [N]), as oracles.blur does it:
    separable 13-tap kernel, zero padding; rounded back to uint8 as oracles.degraded does."""
    x = np.asarray(images)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(x),))
    if x.dtype != np.uint8 or (sigma < 0).any():
        raise ValueError("blur takes uint8 images and sigmas >= 0")
    t = np.arange(-BLUR_RADIUS, BLUR_RADIUS + 1)
    out = x.copy()
    for i in np.flatnonzero(sigma > 0):
        k = np.exp(-t ** 2 / (2 * max(sigma[i], 1e-3) ** 2))
        y = ndi.convolve1d(x[i].astype(np.float64) / 255, k / k.sum(), axis=-1, mode="constant")
        y = ndi.convolve1d(y, k / k.sum(), axis=-2, mode="constant")
        out[i] = np.clip(np.rint(y * 255), 0, 255)
    return out


# --- measures: Morpho-MNIST's pipeline (upscale, binarise, medial axis), then the stroke ----------
def _components(binary):
    """8-connected pieces of each binary image of a stack, in one labelling: labels run in scan
    order, so image k's pieces are the labels above the largest label of the images before it."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True                                        # no links between images
    labels, _ = ndi.label(binary, structure)
    top = labels.max(axis=(1, 2))
    before = np.concatenate([[0], np.maximum.accumulate(top)[:-1]])
    return np.maximum(top - before, 0).astype(np.float64)


def _ink(g):
    """Grey mass (in full-intensity low-res pixels) within INK_MARGIN px of the digit binarised at
    half its range: a blur moves ink but keeps it, so this is the stroke area that blur leaves alone."""
    lo, top = g.min(axis=(1, 2), keepdims=True), g.max(axis=(1, 2), keepdims=True)
    near = ndi.binary_dilation(g >= lo + 0.5 * (top - lo), np.ones((1, 2 * INK_MARGIN + 1,
                                                                     2 * INK_MARGIN + 1), bool))
    return (g * near).sum(axis=(1, 2)) / 255.0


def _stroke(b, hi):
    """Medial-axis measures of one high-resolution binary digit b (from its upscaled grey hi), in
    high-resolution pixels: thickness, skeleton length, r_max, r_max_hi, d25."""
    skel, dist = morpho._medial_axis(b)                      # Morpho-MNIST step 3
    d = dist[skel]
    if not len(d):
        return (np.nan,) * 5
    lo, top = hi.min(), hi.max()
    strict = hi >= lo + HI_LEVEL * (top - lo)
    box = morpho._bbox(strict, 1)
    r_hi = ndi.distance_transform_edt(strict[box]).max() if strict.any() else 0.0
    return 2 * d.mean(), skel.sum(), d.max(), r_hi, np.quantile(d, 0.25)


def measure(images):
    """Per-sample morphometrics of uint8 digits [N,28,28] or [N,C,28,28]: {name: float [N]} for the
    names in MEASURES, in low-res pixels, plus "valid" (False for a blank image, whose measures are
    NaN). Morpho-MNIST's thickness, area and length are steps 1-4 of morpho-ops.md."""
    g = grey(images)
    n, s = len(g), morpho.SCALE
    hi = morpho._expand(g)                                     # step 1: 4x, as the renderings
    binary = morpho._binarise(hi)                              # step 2: half the range
    valid = g.max(axis=(1, 2)) > g.min(axis=(1, 2))
    out = {k: np.full(n, np.nan) for k in MEASURES}
    rows = np.full((n, 5), np.nan)
    for k in np.flatnonzero(valid):
        rows[k] = _stroke(binary[k], hi[k])
    out["thickness"], out["length"] = rows[:, 0] / s, rows[:, 1] / s
    out["r_max"], out["r_max_hi"], out["d25"] = rows[:, 2] / s, rows[:, 3] / s, rows[:, 4] / s
    out["bulge"] = rows[:, 2] / np.maximum(rows[:, 4], 1.0)
    rows_, cols_ = binary.any(axis=2), binary.any(axis=1)
    span = lambda m: m.shape[1] - m.argmax(axis=1) - m[:, ::-1].argmax(axis=1)
    height, width = span(rows_) / s, span(cols_) / s
    for name, v in (("area", binary.sum(axis=(1, 2)) / s ** 2), ("extent", np.maximum(width, height)),
                    ("width", width), ("height", height),
                    ("ink", _ink(g)), ("components", _components(binary))):
        out[name] = np.where(valid, v, np.nan)
    out["valid"] = valid
    return out


# --- the call: one linear discriminant per class, on the factor's measures ----------------------
def _design(m, factor):
    """The factor's measures as columns: logs (ratios become differences), counts as they are."""
    cols = [m[k] if k in COUNTS else np.log(np.maximum(m[k], 1e-3)) for k in CALL_MEASURES[factor]]
    return np.stack(cols, axis=1)


def _lda(X, f):
    """Fisher's discriminant with equal priors on standardised columns: (w, b), called 1 where
    X @ w + b > 0. The pooled covariance is shrunk a little towards the identity (RIDGE)."""
    mu, sd = X.mean(axis=0), X.std(axis=0) + 1e-9
    Z = (X - mu) / sd
    m0, m1 = Z[f == 0].mean(axis=0), Z[f == 1].mean(axis=0)
    R = np.concatenate([Z[f == 0] - m0, Z[f == 1] - m1])
    C = R.T @ R / max(len(R) - 2, 1) + RIDGE * np.eye(Z.shape[1])
    w = np.linalg.solve(C, m1 - m0)
    b = -w @ (m0 + m1) / 2
    return w / sd, b - (w / sd) @ mu


def _ends(cal, c, m, rows, clean, f):
    """Class c's real plain (f = 0) and factor-bearing (f = 1) digits: the mean, sd (ddof 1) and count
    of every measure on the clean rows (`means`, `sd`, `n`), and the mean on all rows (`means_soft`)."""
    for k in MEASURES:
        for v in (0, 1):
            soft = m[k][rows & (f == v)]
            vals = m[k][clean & rows & (f == v)]
            vals = vals[np.isfinite(vals)]
            cal["n"][k][c, v] = len(vals)
            cal["means"][k][c, v] = vals.mean() if len(vals) else np.nan
            cal["sd"][k][c, v] = vals.std(ddof=1) if len(vals) > 1 else np.nan
            cal["means_soft"][k][c, v] = np.nanmean(soft) if np.isfinite(soft).any() else np.nan


def fit_call(m, y, f, factor, clean=None, strict=True):
    """The calibration from measured real digits m (measure()), classes y and truths f: per class c,
    LDA weights w[c] and offset b[c] on all rows, and the plain / factor-bearing mean, sd and count
    [10, 2] of every measure on the clean rows (`means`, `sd`, `n`; clean: a bool mask, default all),
    and the means on all rows (`means_soft`, clean and blurred as calibrated). A class with fewer than
    2 clean digits with or without the factor is an error, or (strict=False: the smoke calibration on
    a tiny split) takes the pooled call and ends of all classes."""
    if factor not in STROKE_FACTORS:
        raise ValueError(f"unknown stroke factor {factor!r}; accepted: {', '.join(STROKE_FACTORS)}")
    y, f, ok = np.asarray(y), np.asarray(f), m["valid"]
    clean = ok if clean is None else ok & np.asarray(clean, bool)
    X = _design(m, factor)
    cal = {"factor": factor, "measures": CALL_MEASURES[factor], "main": MAIN[factor],
           "w": np.zeros((10, X.shape[1])), "b": np.zeros(10),
           **{s: {k: np.full((10, 2), np.nan) for k in MEASURES} for s in ("means", "sd", "n", "means_soft")}}
    enough = lambda rows: min((clean & rows & (f == v)).sum() for v in (0, 1)) >= 2
    for c in range(10):
        rows = ok & (y == c)
        if not enough(rows):
            if strict or not enough(ok):
                raise ValueError(f"class {c}: the calibration needs >= 2 digits with and without {factor}")
            rows = ok                                    # smoke on a tiny split: the pooled call
        cal["w"][c], cal["b"][c] = _lda(X[rows], f[rows])
        _ends(cal, c, m, rows, clean, f)
    return cal


def as_json(cal):
    """The calibration with lists for arrays (NaN as None, for JSON); score, call and fit take it back."""
    lists = lambda d: {k: [[None if not np.isfinite(v) else round(float(v), 6) for v in row]
                           for row in np.asarray(a, np.float64)] for k, a in d.items()}
    return {"factor": cal["factor"], "measures": list(cal["measures"]), "main": cal["main"],
            "w": np.asarray(cal["w"]).tolist(), "b": np.asarray(cal["b"]).tolist(),
            **{s: lists(cal[s]) for s in ("means", "sd", "n", "means_soft")}}


def score(m, y, cal):
    """The discriminant of each measured sample under its class's calibration (> 0: factor-bearing);
    NaN for a blank sample."""
    y = np.asarray(y)
    if y.shape != m["valid"].shape or ((y < 0) | (y > 9)).any():
        raise ValueError("y must hold one class in 0..9 per measured sample")
    w, b = np.asarray(cal["w"], np.float64), np.asarray(cal["b"], np.float64)
    return (_design(m, cal["factor"]) * w[y]).sum(axis=1) + b[y]


def call(m, y, cal):
    """The morphometric call f in {0, 1} of each measured sample; a blank sample is called 0."""
    return (np.nan_to_num(score(m, y, cal), nan=-1.0) > 0).astype(np.int64)


def fit(values, y, cal, measure_name=None, ends="means"):
    """Per class, where the mean of `values` (a measure of model samples) sits between the real plain
    digits of that class (0) and the real factor-bearing ones (1); NaN for a class with no sample.
    ends: "means" (clean real digits) or "means_soft" (clean and blurred, as calibrated)."""
    ends = np.asarray(cal[ends][measure_name or cal["main"]], np.float64)
    values, y = np.asarray(values, np.float64), np.asarray(y)
    out = np.full(10, np.nan)
    for c in range(10):
        v = values[(y == c) & np.isfinite(values)]
        if len(v):
            out[c] = (v.mean() - ends[c, 0]) / (ends[c, 1] - ends[c, 0])
    return out


# --- calibration on real held-out digits, clean and blurred -------------------------------------
def soft_copies(x, y, f, copies=CAL_COPIES, seed=0):
    """Each digit clean and `copies` times blurred at sigma ~ U[0, BLUR_MAX]: (grey uint8, y, f,
    sigma), the clean copies first."""
    g = grey(x)
    rng = np.random.default_rng([CAL_SEED, seed])
    sig = np.concatenate([np.zeros(len(g))] + [rng.uniform(0, BLUR_MAX, len(g)) for _ in range(copies)])
    reps = copies + 1
    return blur(np.tile(g, (reps, 1, 1)), sig), np.tile(y, reps), np.tile(f, reps), sig


def calibrate(factor, root=None, cache_dir=None, seed=0, copies=CAL_COPIES, limit=None):
    """The call of one stroke factor, calibrated on the val split (real digits held out of training,
    balanced: half of each class with the factor), clean and blurred. limit: only the first `limit` val
    digits (the smoke calibration), where a class short of digits takes the pooled call, and a val
    split too small for even that (a tiny test root) gives way to test digits in both versions."""
    import data                 # the datasets (section 4); measuring alone needs only study.morpho
    if factor not in STROKE_FACTORS:
        raise ValueError(f"unknown stroke factor {factor!r}; accepted: {', '.join(STROKE_FACTORS)}")
    x, y, f = data.make_dataset(factor, "val", seed=seed, root=root, cache_dir=cache_dir)
    if limit is not None and min((f[:limit] == v).sum() for v in (0, 1)) < 2:      # smoke only
        x, y, f = data.make_dataset(factor, "test", seed=seed, root=root, cache_dir=cache_dir, limit=limit // 2)
    g, y, f, sigma = soft_copies(x[:limit], y[:limit], f[:limit], copies, seed)
    return fit_call(measure(g), y, f, factor, clean=sigma == 0, strict=limit is None)


def calibration_path(factor, root=None, cache_dir=None, data_seed=0, smoke=False):
    """(<cache>/morphometry/<factor>-ds<seed>-<hash>[-smoke].json, its key): the key names what the
    calibration depends on (CAL_VERSION, the rendering recipe, the MNIST files' sizes, the parameters),
    so that a fixture and the real MNIST, or an older calibration, never share an entry."""
    import data
    root = data.data_root(root)
    raw = os.path.join(root, "MNIST", "raw")
    sizes = [os.path.getsize(p) if os.path.exists(p) else None
             for p in (os.path.join(raw, n) for n in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"))]
    key = json.loads(json.dumps({
        "version": CAL_VERSION, "factor": factor, "data_seed": int(data_seed), "smoke": bool(smoke),
        "recipe": morpho.RECIPE, "mnist": sizes,
        "params": [CAL_COPIES, CAL_SEED, BLUR_MAX, BLUR_RADIUS, RIDGE, HI_LEVEL, INK_MARGIN, SMOKE_CAL]}))
    h = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{factor}-ds{data_seed}-{h}{'-smoke' if smoke else ''}.json"
    return os.path.join(data.cache_root(root, cache_dir), "morphometry", name), key


def cached_calibration(factor, root=None, cache_dir=None, data_seed=0, smoke=False):
    """The calibration of one stroke factor (as_json's form), read from the cache or calibrated now
    (~15 s; smoke: the first SMOKE_CAL val digits, one blurred copy each, in a second or two) and
    cached atomically. A missing, corrupt or stale cache file is rebuilt; an unwritable one skipped."""
    import data
    path, key = calibration_path(factor, root, cache_dir, data_seed, smoke)
    try:
        with open(path) as fh:
            got = json.load(fh)
        if got["key"] == key:
            return got["cal"]
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError):
        print(f"morphometry: calibration cache {path} is corrupt; rebuilding it", file=sys.stderr)
    cal = as_json(calibrate(factor, root, cache_dir, data_seed, 1 if smoke else CAL_COPIES,
                            SMOKE_CAL if smoke else None))
    try:
        data.save_json({"key": key, "cal": cal}, path)
    except OSError as e:
        print(f"morphometry: could not write {path} ({e}); continuing without it", file=sys.stderr)
    return cal


# --- validation on the test split: each MNIST test digit once, half of each class with the factor --
def held_out(factor, n, root=None, cache_dir=None, seed=0):
    """n real test digits (grey uint8, y, f), n // 2 with the factor, drawn from data.reference_digits
    (each test digit once; never in the val split the call was calibrated on)."""
    import data
    x, y, f = data.reference_digits(factor, "u", seed=seed, root=root, cache_dir=cache_dir)
    rng = np.random.default_rng([CAL_SEED, seed, 1])
    pick = np.concatenate([rng.permutation(np.flatnonzero(f == v))[:n // 2] for v in (0, 1)])
    if len(pick) < 2 * (n // 2):
        raise ValueError(f"only {len(pick)} held-out digits; asked for {n}")
    return grey(x[pick]), y[pick], f[pick]


def validate(n=2000, root=None, cache_dir=None, seed=0, factors=STROKE_FACTORS):
    """{factor: {sigma: (agreement, called share, truth share)}} of the calibrated call on n held-out
    test digits per factor, clean and blurred at each sigma of SIGMAS."""
    table = {}
    for factor in factors:
        cal = calibrate(factor, root, cache_dir, seed)
        g, y, f = held_out(factor, n, root, cache_dir, seed)
        table[factor] = {}
        for s in SIGMAS:
            called = call(measure(blur(g, s)), y, cal)
            table[factor][s] = (float((called == f).mean()), float(called.mean()), float(f.mean()))
    return table


def render_table(table, n, seconds):
    """The validation as a markdown table, with the targets met or not."""
    lines = [f"| factor | measures | " + " | ".join(f"sigma {s:g}" for s in SIGMAS) + " | targets |",
             "|---|---|" + "---|" * len(SIGMAS) + "---|"]
    for factor, row in table.items():
        ok = all(row[s][0] >= t for s, t in TARGETS.items() if s in row)
        cells = [f"{row[s][0]:.3f} (called {row[s][1]:.2f})" for s in SIGMAS]
        lines.append(f"| {factor} | {', '.join(CALL_MEASURES[factor])} | " + " | ".join(cells)
                     + f" | {'met' if ok else 'NOT met'} |")
    lines.append(f"\nAgreement of the morphometric call with the truth on {n} held-out MNIST test digits "
                 f"per factor (half with the factor); targets >= {TARGETS[0.0]:.2f} clean, "
                 f">= {TARGETS[1.0]:.2f} at sigma 1. {seconds:.0f} s on {platform.machine()}.")
    return "\n".join(lines)


# --- the reading of a run's samples: per class, the morphometric call and the measures -----------
def _num(v):
    """A float for JSON, rounded to 6 decimals; None for NaN, inf or None."""
    return None if v is None or not np.isfinite(v) else round(float(v), 6)


def class_stats(values, y):
    """Per class c of 0..9: {"n", "mean", "sd"} (ddof 1) of the finite values of class c; None where
    undefined (no value, or one for sd)."""
    values, y = np.asarray(values, np.float64), np.asarray(y)
    out = {"n": [], "mean": [], "sd": []}
    for c in range(10):
        v = values[(y == c) & np.isfinite(values)]
        out["n"].append(int(len(v)))
        out["mean"].append(_num(v.mean()) if len(v) else None)
        out["sd"].append(_num(v.std(ddof=1)) if len(v) > 1 else None)
    return out


def end_digits(factor, root=None, cache_dir=None, data_seed=0, smoke=False):
    """The real digits the fit's ends come from: every MNIST test digit once, half of each class with the
    factor (data.reference_digits; held out of every model's training and of the call's calibration),
    as (uint8 images, y, f, {measure: values}). The measures are cached beside the calibration (~20 s
    once); smoke: the first SMOKE_CAL digits."""
    import data
    from study.runs import atomic_write
    x, y, f = data.reference_digits(factor, "u", seed=data_seed, root=root, cache_dir=cache_dir)
    if smoke:
        x, y, f = x[:SMOKE_CAL], y[:SMOKE_CAL], f[:SMOKE_CAL]
    path = calibration_path(factor, root, cache_dir, data_seed, smoke)[0][:-len(".json")] + "-ends.npz"
    try:
        with np.load(path) as z:
            v = {k: z[k] for k in MEASURES}
        if all(a.shape == y.shape for a in v.values()):
            return x, y, f, v
    except (OSError, ValueError, KeyError):
        pass
    m = measure(grey(x))
    v = {k: m[k].astype(np.float64) for k in MEASURES}
    try:
        atomic_write(path, lambda fh: np.savez(fh, **v))
    except OSError as e:
        print(f"morphometry: could not write {path} ({e}); continuing without it", file=sys.stderr)
    return x, y, f, v


def real_ends(orc, factor, root=None, cache_dir=None, data_seed=0, smoke=False):
    """The fit's ends: per class, the main measure's {"n", "mean", "sd"} over real plain (f = 0) and
    factor-bearing (f = 1) test digits (end_digits) that the label oracle reads as their class with
    p > 0.9, the filter the model's samples pass (it drops, e.g., the thickest real 1s: filtering one
    side only would bias the fit); and under "measures" the same for every measure (a sample's shape,
    width and height, against the real class's)."""
    from study.readings import CONFIDENT
    import oracles
    x, y, f, v = end_digits(factor, root, cache_dir, data_seed, smoke)
    p = np.asarray(oracles.predict_proba(orc, x)[0])
    keep = (p.max(1) > CONFIDENT) & (p.argmax(1) == y)
    sides = (("plain", keep & (f == 0)), ("factor", keep & (f == 1)))
    out = {side: class_stats(v[MAIN[factor]][m], y[m]) for side, m in sides}
    out["measures"] = {k: {side: class_stats(v[k][m], y[m]) for side, m in sides} for k in MEASURES}
    return out


def _readable(orc, x):
    """The samples the label oracle reads with max p > CONFIDENT (the readable reading's samples,
    study.readings): (those samples, their classes)."""
    import oracles
    from study.readings import CONFIDENT
    p = np.asarray(oracles.predict_proba(orc, x)[0])
    keep = p.max(1) > CONFIDENT
    return x[keep], p.argmax(1)[keep].astype(np.int64)


def _check_reading(samples, rare, halves=("u", "r")):
    """The samples of `halves` as uint8 [M,3,28,28] arrays, and rare in 0..9; else ValueError."""
    if isinstance(rare, bool) or not isinstance(rare, (int, np.integer)) or not 0 <= rare <= 9:
        raise ValueError(f"rare class {rare!r}; accepted: an integer 0..9")
    out = {}
    for w in halves:
        x = np.asarray(samples.get(w) if isinstance(samples, dict) else None)
        if x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (3, 28, 28):
            raise ValueError(f"samples[{w!r}]: {x.dtype} {list(x.shape)}; accepted: uint8 [M,3,28,28]")
        out[w] = x
    return out


def reading(orc, samples, factor, rare, root=None, cache_dir=None, data_seed=0, smoke=False, halves=("u", "r")):
    """The morphometric reading of a run: the D_u and D_r models' samples {"u", "r"} (uint8 [M,3,28,28])
    that the label oracle of `orc` (oracles.load_oracles) reads with p > 0.9 are measured and called
    with the per-class calibration on real val digits (cached_calibration; smoke: the small one).
    Returns a JSON-able dict, or None for colour or a dataset other than MNIST:
      "counts": {w: {"n": [10], "k": [10]}}, readable samples per class and those called
        factor-bearing (result.json's "counts" shape: eq. 1 takes it);
      "measures": {w: {measure: {"n", "mean", "sd"} per class}} for every name in MEASURES;
      "ends": real_ends(): real readable plain and factor-bearing test digits' main measure per class;
      "main", "factor", "rare", "confidence", "calibration", "format".
    halves=("u",): the D_u model alone (du.json of a --stage u run: the morphometric null check reads it)."""
    if factor not in STROKE_FACTORS or orc.get("dataset", "mnist") != "mnist":
        return None
    from study.readings import CONFIDENT
    samples = _check_reading(samples, rare, halves)
    cal = cached_calibration(factor, root, cache_dir, data_seed, smoke)
    out = {"format": FORMAT, "factor": factor, "rare": int(rare), "main": cal["main"],
           "confidence": CONFIDENT, "calibration": {"version": CAL_VERSION, "smoke": bool(smoke),
                                                    "data_seed": int(data_seed)},
           "ends": real_ends(orc, factor, root, cache_dir, data_seed, smoke), "counts": {}, "measures": {}}
    for w in halves:
        x, y = _readable(orc, samples[w])
        m = measure(x)
        called = call(m, y, cal)
        out["counts"][w] = {"n": np.bincount(y, minlength=10).tolist(),
                            "k": np.bincount(y, weights=called, minlength=10).astype(int).tolist()}
        out["measures"][w] = {k: class_stats(m[k], y) for k in MEASURES}
    return out


# --- the rare digit's fit and tie, from the stored statistics alone -------------------------------
def _mean_se(block, c):
    """(mean, standard error sd / sqrt(n), n) of class c in a {"n", "mean", "sd"} block; NaN where the
    block has fewer than 2 values (None in JSON)."""
    n = int(block["n"][c] or 0)
    mean, sd = (np.nan if v is None else float(v) for v in (block["mean"][c], block["sd"][c]))
    return (mean, sd / math.sqrt(n), n) if n >= 2 else (np.nan, np.nan, n)


def _ratio(a, lo, hi):
    """(a - lo) / (hi - lo) of three independent (mean, se) and its 95% interval by the delta method:
    var = (se_a^2 + t'^2 se_lo^2 + t^2 se_hi^2) / (hi - lo)^2, t = (a - lo) / (hi - lo), t' = 1 - t.
    (None, None) where undefined."""
    (a, sa), (lo, sl), (hi, sh) = a, lo, hi
    d = hi - lo
    if not all(np.isfinite(v) for v in (a, sa, lo, sl, hi, sh, d)) or d == 0:
        return None, None
    t = (a - lo) / d
    se = math.sqrt(sa ** 2 + (1 - t) ** 2 * sl ** 2 + t ** 2 * sh ** 2) / abs(d)
    return float(t), [float(t - Z95 * se), float(t + Z95 * se)]


def fit_tie(morph, rare):
    """The rare digit's morphometric fit and tie, from a reading's stored statistics (recomputable from
    result.json). fit_w = (m_w - m_plain) / (m_factor - m_plain) of the main measure's class mean: 0 =
    real plain digits of the class, 1 = real factor-bearing ones (D_r holds only these: a D_r model that
    fits its data is near 1). tie = (m_r - m_u) / (m_factor - m_u): how far the D_r model's rare digit
    moved from the D_u model's towards real factor-bearing ones (0 = not at all, 1 = all the way).
    95% intervals by the delta method on sd / sqrt(n) of each mean; None where a side has < 2 samples.
    {"fit_u", "fit_u_ci", "fit_r", "fit_r_ci", "tie", "tie_ci", "n_u", "n_r", "measure"}."""
    main = morph["main"]
    (mu, su, nu), (mr, sr, nr) = (_mean_se(morph["measures"][w][main], rare) for w in ("u", "r"))
    plain, fact = (_mean_se(morph["ends"][s], rare)[:2] for s in ("plain", "factor"))
    out = {"measure": main, "n_u": nu, "n_r": nr}
    out["fit_u"], out["fit_u_ci"] = _ratio((mu, su), plain, fact)
    out["fit_r"], out["fit_r_ci"] = _ratio((mr, sr), plain, fact)
    out["tie"], out["tie_ci"] = _ratio((mr, sr), (mu, su), fact)
    return out


def format_fit(morph, rare):
    """The fit and the tie as text for the quality report (two lines); "" when there is no reading."""
    if not morph:
        return ""
    ft = fit_tie(morph, rare)
    val = lambda k: "-" if ft[k] is None else f"{ft[k]:.2f} [{ft[k + '_ci'][0]:.2f}, {ft[k + '_ci'][1]:.2f}]"
    noun = NOUN.get(morph["factor"], morph["factor"])
    return (f"morphometric fit of digit {rare} ({ft['measure']}): D_u {val('fit_u')}, D_r {val('fit_r')}; "
            f"tie {val('tie')}\n  (fit: 0 = real plain {rare}s, 1 = real {noun} ones; tie: 0 = D_r's {rare}s "
            f"as D_u's, 1 = as real {noun} ones; {ft['n_u']} / {ft['n_r']} readable {rare}s)")


# --- adding the reading to a finished run, from its samples.npz ---------------------------------
def _result_path(path):
    """PATH (a result.json, or the D_r run folder holding one) -> the result.json; else ValueError."""
    file = os.path.join(path, "result.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise ValueError(f"--add {path}: no such result.json; accepted: a result.json or the D_r run "
                         f"folder holding it")
    return file


def _samples_of(res, file, which, runs=None):
    """The samples.npz of the D_u (which="u") or D_r model of a result: res["dirs"][which] (absolute,
    or relative to the folder of result.json), else <runs>/<run_name>/<its base name>."""
    d = (res.get("dirs") or {}).get(which)
    if not isinstance(d, str):
        raise ValueError(f"{file}: no dirs.{which}; accepted: a result.json of a model run")
    d = os.path.join(os.path.dirname(os.path.abspath(file)), d)
    tried = [d] + ([os.path.join(runs, str(res.get("run_name")), os.path.basename(os.path.normpath(d)))]
                   if runs else [])
    for folder in tried:
        if os.path.isfile(npz := os.path.join(folder, "samples.npz")):
            with np.load(npz) as z:
                x = z["x"] if "x" in z.files else None
            if x is None or x.dtype != np.uint8 or x.shape[1:] != (3, 28, 28) or len(x) != res.get("samples"):
                raise ValueError(f"{npz}: {None if x is None else (x.dtype, list(x.shape))}; accepted: uint8 "
                                 f"x [{res.get('samples')},3,28,28], the run's M samples")
            return x
    raise ValueError(f"no samples.npz of the D_{which} model in {' or '.join(tried)}; accepted: the run's "
                     f"folders (or --runs DIR holding <run_name>/<folder>)")


def add(path, runs=None, device="auto", root=None, cache_dir=None):
    """The morphometric reading added to a finished run: its D_u and D_r samples.npz read with its own
    oracles (as ztest.evaluate loads them) into res["morphometric"] and res["quality"]["fit"];
    result.json rewritten atomically. Returns the result. Bad input: ValueError naming the value."""
    import data
    import oracles
    file = _result_path(path)
    try:
        with open(file) as fh:
            res = json.load(fh)
        factor, dataset, rare = res["factor"], res.get("dataset", "mnist"), res["rare"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{file}: not a run's result.json ({type(e).__name__}: {e})") from None
    if dataset != "mnist" or factor not in STROKE_FACTORS:
        raise ValueError(f"{file}: {dataset} {factor} has no morphometric reading; accepted: an MNIST "
                         f"result of {', '.join(STROKE_FACTORS)}")
    samples = {w: _samples_of(res, file, w, runs) for w in ("u", "r")}
    orc = oracles.load_oracles(factor, dataset, root=root, cache_dir=cache_dir, device=data.pick_device(device),
                               data_seed=res.get("data_seed", 0), smoke=bool(res.get("oracle_smoke")),
                               recipe_name=res.get("oracle_recipe", "paper"))
    res["morphometric"] = reading(orc, samples, factor, rare, root, cache_dir, res.get("data_seed", 0),
                                  smoke=bool(res.get("oracle_smoke")))
    res.setdefault("quality", {})["fit"] = fit_tie(res["morphometric"], rare)
    data.save_json(res, file)
    print(format_fit(res["morphometric"], rare))
    print(f"saved {file}")
    return res


def fit_of_samples(folder, factor, rare, device="auto", root=None, cache_dir=None, data_seed=0):
    """The fit of one model's samples (folder/samples.npz), without a second model: per class, where its
    readable samples sit between real plain (0) and real factor-bearing (1) digits, with the rare
    digit's 95% interval. For curves of the fit against training (a D_r model should reach about 1).
    Returns {"fit": [10], "rare": fit_tie's D_r half, "readable": share of samples read}."""
    import data
    import oracles
    path = os.path.join(folder, "samples.npz")
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file; accepted: a run folder holding samples.npz")
    with np.load(path) as z:
        x = z["x"]
    orc = oracles.load_oracles(factor, "mnist", root=root, cache_dir=cache_dir, device=data.pick_device(device),
                               data_seed=data_seed)
    morph = reading(orc, {"u": x, "r": x}, factor, rare, root, cache_dir, data_seed)
    fits = [fit_tie(morph, c)["fit_r"] for c in range(10)]
    ft = fit_tie(morph, rare)
    out = {"fit": fits, "rare": {k: ft[k] for k in ("fit_r", "fit_r_ci", "n_r", "measure")},
           "readable": sum(morph["counts"]["r"]["n"]) / len(x)}
    num = lambda v: "-" if v is None else f"{v:.2f}"
    print(f"{folder}: fit of digit {rare} ({ft['measure']}) {num(ft['fit_r'])} "
          f"[{num((ft['fit_r_ci'] or [None])[0])}, {num((ft['fit_r_ci'] or [None, None])[1])}] on {ft['n_r']} readable "
          f"samples; other digits {' '.join(num(v) for c, v in enumerate(fits) if c != rare)}; "
          f"{out['readable']:.1%} of the samples readable")
    return out


# --- command line --------------------------------------------------------------------------------
def main(argv=None):
    import data
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.error = data.fail                                      # one line, exit 2
    g = p.add_mutually_exclusive_group()
    g.add_argument("--validate", action="store_true", help="the call on held-out test digits")
    g.add_argument("--add", metavar="PATH", help="add the reading to a run: its result.json or D_r folder")
    g.add_argument("--fit", metavar="DIR", help="the fit of one model's samples (DIR/samples.npz), per class; "
                   "needs one --factor and --rare")
    p.add_argument("--rare", type=int, default=1, help="--fit: the rare digit (default: 1)")
    p.add_argument("--runs", default=None, metavar="DIR", help="--add: runs folder to look for moved samples in")
    p.add_argument("--device", default="auto", help="--add: the oracles' device (default: auto)")
    p.add_argument("--data-root", default=None, help="folder holding MNIST/raw (or $RGF_DATA_ROOT)")
    p.add_argument("--cache-dir", default=None, help="rendering cache (or $RGF_CACHE_DIR)")
    p.add_argument("--n", type=int, default=2000, help="held-out test digits per factor (>= 20)")
    p.add_argument("--seed", type=int, default=0, help="data seed")
    p.add_argument("--factor", choices=STROKE_FACTORS, action="append", help="one factor (repeatable)")
    a = p.parse_args(argv)
    data.check_paths(a, folders=("cache_dir",), inputs=("data_root",))      # before any work: nothing created
    if a.add:
        try:
            if a.runs and not os.path.isdir(a.runs):
                raise ValueError(f"--runs {a.runs}: no such folder; accepted: a runs folder")
            return add(a.add, a.runs, a.device, a.data_root, a.cache_dir)
        except (ValueError, FileNotFoundError) as e:
            data.fail(str(e))
    if a.fit:
        if not a.factor or len(a.factor) > 1 or not 0 <= a.rare <= 9:
            p.error(f"--fit needs one --factor of {', '.join(STROKE_FACTORS)} and --rare in 0..9")
        try:
            return fit_of_samples(a.fit, a.factor[0], a.rare, a.device, a.data_root, a.cache_dir, a.seed)
        except (ValueError, FileNotFoundError) as e:
            data.fail(str(e))
    if not a.validate:
        p.error("nothing to do: pass --validate, --add PATH or --fit DIR")
    if a.n < 20:
        p.error(f"--n {a.n}: at least 20 digits")
    t0 = time.time()
    table = validate(a.n, a.data_root, a.cache_dir, a.seed, tuple(a.factor or STROKE_FACTORS))
    print(render_table(table, a.n, time.time() - t0))
    return table


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
