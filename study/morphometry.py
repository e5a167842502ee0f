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
of the fit, (m_model - m_plain) / (m_factor - m_plain), of the factor's main measure.

    python -m study.morphometry --validate [--data-root DIR] [--n 2000]   # the call on test digits,
                                                                          # clean and blurred
"""
import argparse
import platform
import sys
import time

import numpy as np
from scipy import ndimage as ndi

from study import morpho

# --- configuration ------------------------------------------------------------------------------
STROKE_FACTORS = ("thin", "thick", "swell", "fracture")
MEASURES = ("thickness", "area", "length", "extent", "ink", "r_max", "r_max_hi", "d25", "bulge",
            "components")
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
    ext = np.maximum(span(rows_), span(cols_)) / s
    for name, v in (("area", binary.sum(axis=(1, 2)) / s ** 2), ("extent", ext),
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


def fit_call(m, y, f, factor, clean=None):
    """The calibration from measured real digits m (measure()), classes y and truths f: per class c,
    LDA weights w[c] and offset b[c] on all rows, and the plain / factor-bearing means [10, 2] of every
    measure, on the clean rows (`means`; clean: a bool mask, default all) and on all rows
    (`means_soft`, clean and blurred as calibrated)."""
    if factor not in STROKE_FACTORS:
        raise ValueError(f"unknown stroke factor {factor!r}; accepted: {', '.join(STROKE_FACTORS)}")
    y, f, ok = np.asarray(y), np.asarray(f), m["valid"]
    clean = ok if clean is None else ok & np.asarray(clean, bool)
    X = _design(m, factor)
    w, b = np.zeros((10, X.shape[1])), np.zeros(10)
    means = {k: np.full((10, 2), np.nan) for k in MEASURES}
    soft = {k: np.full((10, 2), np.nan) for k in MEASURES}
    for c in range(10):
        rows = ok & (y == c)
        if min((clean & rows & (f == v)).sum() for v in (0, 1)) < 2:
            raise ValueError(f"class {c}: the calibration needs >= 2 digits with and without {factor}")
        w[c], b[c] = _lda(X[rows], f[rows])
        for k in MEASURES:
            means[k][c] = [m[k][clean & rows & (f == v)].mean() for v in (0, 1)]
            soft[k][c] = [m[k][rows & (f == v)].mean() for v in (0, 1)]
    return {"factor": factor, "measures": CALL_MEASURES[factor], "main": MAIN[factor],
            "w": w, "b": b, "means": means, "means_soft": soft}


def as_json(cal):
    """The calibration with lists for arrays (for result.json); score, call and fit take it back."""
    lists = lambda d: {k: np.round(v, 6).tolist() for k, v in d.items()}
    return {"factor": cal["factor"], "measures": list(cal["measures"]), "main": cal["main"],
            "w": np.asarray(cal["w"]).tolist(), "b": np.asarray(cal["b"]).tolist(),
            "means": lists(cal["means"]), "means_soft": lists(cal["means_soft"])}


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


def calibrate(factor, root=None, cache_dir=None, seed=0, copies=CAL_COPIES):
    """The call of one stroke factor, calibrated on the val split (real digits held out of training,
    balanced: half of each class with the factor), clean and blurred."""
    import data                 # the datasets (section 4); measuring alone needs only study.morpho
    if factor not in STROKE_FACTORS:
        raise ValueError(f"unknown stroke factor {factor!r}; accepted: {', '.join(STROKE_FACTORS)}")
    x, y, f = data.make_dataset(factor, "val", seed=seed, root=root, cache_dir=cache_dir)
    g, y, f, sigma = soft_copies(x, y, f, copies, seed)
    return fit_call(measure(g), y, f, factor, clean=sigma == 0)


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


# --- command line --------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--validate", action="store_true", help="the call on held-out test digits")
    p.add_argument("--data-root", default=None, help="folder holding MNIST/raw (or $RGF_DATA_ROOT)")
    p.add_argument("--cache-dir", default=None, help="rendering cache (or $RGF_CACHE_DIR)")
    p.add_argument("--n", type=int, default=2000, help="held-out test digits per factor (>= 20)")
    p.add_argument("--seed", type=int, default=0, help="data seed")
    p.add_argument("--factor", choices=STROKE_FACTORS, action="append", help="one factor (repeatable)")
    a = p.parse_args(argv)
    if not a.validate:
        p.error("nothing to do: pass --validate")
    if a.n < 20:
        p.error(f"--n {a.n}: at least 20 digits")
    t0 = time.time()
    table = validate(a.n, a.data_root, a.cache_dir, a.seed, tuple(a.factor or STROKE_FACTORS))
    print(render_table(table, a.n, time.time() - t0))
    return table


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
