"""The Morpho-MNIST perturbations of the paper's section 5.1: thinning, thickening, swelling, fracture.

Castro et al.'s algorithms (Morpho-MNIST, 2019; steps 1-6 of shared/reference/morpho-ops.md): upscale
the digit 4x, binarise it, find its skeleton and mean stroke thickness, perturb the high-resolution
image, and downscale it again. Two implementations give the same bytes: a per-image reference pipeline
that calls scikit-image as plainly as possible, and the fast batched one that data.py uses (one
skeleton per digit for all five renderings, pyramids as matrix products, skimage's medial-axis loop
with its tables built once, worker processes). data.py caches what `render` gives; this module
imports nothing else from the project but study.runs.

    python -m study.morpho --benchmark --data-root DIR   # time all 70k digits x 5 renderings, and
                                                         # check the fast pipeline against the reference
"""
import argparse
import functools
import hashlib
import multiprocessing
import os
import tempfile
import time

import numpy as np
from scipy import ndimage as ndi
from skimage import draw, morphology, transform
from tqdm import tqdm

from study.runs import atomic_write, fail

MORPH_OPS = ("thin", "thick", "swell", "fracture")


# --- parameters and the primitives both pipelines share ------------------------------------------
SCALE = 4                               # step 1: 28 px -> 112 px
SIGMA = 2 * SCALE / 6                   # skimage's default pyramid blur
THIN, THICK = 0.7, 1.0                  # erosion / dilation `amount`
SWELL_STRENGTH, SWELL_RADIUS = 3, 7
FRAC_N, FRAC_THICK, FRAC_PRUNE, FRAC_WINDOW, FRAC_EXT = 3, 1.5, 2, 2, 0.5   # low-res px
RENDERINGS = ("plain",) + MORPH_OPS
RECIPE = (f"morpho-v1 scale={SCALE} expand=cubic reduce=linear thin={THIN} thick={THICK} "
          f"swell={SWELL_STRENGTH},{SWELL_RADIUS} frac={FRAC_N},{FRAC_THICK},{FRAC_PRUNE},"
          f"{FRAC_WINDOW},{FRAC_EXT} uint8=rint")   # any change here invalidates the caches


def _to_uint8(x):
    return np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def _binarise(hi):
    """Step 2: foreground where >= min + 0.5 (max - min), per image (works on stacks too)."""
    lo, top = hi.min(axis=(-2, -1), keepdims=True), hi.max(axis=(-2, -1), keepdims=True)
    return hi >= lo + 0.5 * (top - lo)


def _thin_thick_radius(amount, thickness):
    return int(amount * SCALE * thickness / 2)


def _swell_source(rows, cols, centre, thickness):
    """Swelling's inverse map: p with |p - c| < R reads from c + (p - c) (|p - c| / R)^(strength - 1)."""
    R = SWELL_RADIUS * np.sqrt(thickness) / 2 * SCALE
    dr, dc = rows - centre[0], cols - centre[1]
    dist = np.hypot(dr, dc)
    k = np.where(dist < R, (dist / R) ** (SWELL_STRENGTH - 1), 1.0)
    return centre[0] + dr * k, centre[1] + dc * k, dist < R


def _fracture(binary, skel, dist, rng):
    """Erase FRAC_N short lines across the stroke at random skeleton points away from tips and forks."""
    box = _bbox(skel, 1)
    sk, (h, w) = skel[box], binary.shape
    pad = np.pad(sk, 1).astype(np.uint8)
    nbrs = (sum(pad[i:i + sk.shape[0], j:j + sk.shape[1]] for i in range(3) for j in range(3)) - 1) * sk
    offset = np.array([box[0].start, box[1].start])
    pts, joints = np.argwhere(sk) + offset, np.argwhere((nbrs == 1) | (nbrs == 3)) + offset  # tips, forks
    if len(joints):   # prune: keep skeleton pixels farther than FRAC_PRUNE from every tip and fork
        far = (((pts[:, None] - joints[None]) ** 2).sum(-1) > (FRAC_PRUNE * SCALE) ** 2).all(1)
        pts = pts[far] if far.any() else pts            # fallback: the whole skeleton
    centres = pts[rng.choice(len(pts), size=FRAC_N, replace=len(pts) < FRAC_N)]
    r = int(np.ceil((FRAC_THICK * SCALE - 1) / 2))      # round brush of 2r+1 >= 1.5*scale px
    by, bx = np.nonzero(morphology.disk(r))
    out, win = binary.copy(), FRAC_WINDOW * SCALE
    for c in centres:
        # local stroke direction: major axis of the skeleton pixels in a (2 win + 1)^2 window
        sub = np.argwhere(skel[max(c[0] - win, 0):c[0] + win + 1, max(c[1] - win, 0):c[1] + win + 1])
        d = sub - sub.mean(axis=0)
        theta = 0.5 * np.arctan2(2 * (d[:, 0] * d[:, 1]).mean(), (d[:, 0] ** 2).mean() - (d[:, 1] ** 2).mean())
        normal = (dist[c[0], c[1]] + FRAC_EXT * SCALE) * np.array([-np.sin(theta), np.cos(theta)])
        p0, p1 = np.rint(c + normal).astype(int), np.rint(c - normal).astype(int)
        ii, jj = draw.line(p0[0], p0[1], p1[0], p1[1])
        ii, jj = (ii[:, None] + by - r).ravel(), (jj[:, None] + bx - r).ravel()
        keep = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)  # clip where the line leaves the image
        out[ii[keep], jj[keep]] = False
    return out


# --- reference pipeline: straightforward, per image, skimage medial_axis (the benchmark baseline) --
def _reference_one(image, op, rng):
    """Steps 1-6 of morpho-ops.md for one digit and one op, as plainly as possible."""
    hi = transform.pyramid_expand(image, upscale=SCALE, order=3)               # 1. upscale
    binary = _binarise(hi)                                                     # 2. binarise
    if op == "plain":                                                          # (no 3-5)
        return _to_uint8(transform.pyramid_reduce(binary.astype(float), downscale=SCALE))
    skel, dist = morphology.medial_axis(binary, return_distance=True, rng=0)   # 3. skeleton
    thickness = 2 * dist[skel].mean() / SCALE                                  # 4. thickness
    if op == "thin":                                                           # 5. perturb
        out = morphology.erosion(binary, morphology.disk(_thin_thick_radius(THIN, thickness)))
    elif op == "thick":
        out = morphology.dilation(binary, morphology.disk(_thin_thick_radius(THICK, thickness)))
    elif op == "swell":
        centre = np.argwhere(skel)[rng.integers(skel.sum())]
        def inverse_map(xy):  # skimage passes (col, row) pairs
            r, c, _ = _swell_source(xy[:, 1], xy[:, 0], centre, thickness)
            return np.stack([c, r], axis=1)
        out = transform.warp(binary.astype(float), inverse_map, order=1)
    else:
        out = _fracture(binary, skel, dist, rng)
    return _to_uint8(transform.pyramid_reduce(out.astype(float), downscale=SCALE))   # 6. downscale


def _reference_pipeline(images, op, seed=0, start=0):
    """The baseline: one digit and one op at a time; same per-image generators as perturb()."""
    k = RENDERINGS.index(op)
    return np.stack([_reference_one(im, op, np.random.default_rng([seed, k, start + i]))
                     for i, im in enumerate(images)])


# --- fast pipeline: one skeleton per digit for all five renderings, batched pyramids, workers -----
CHUNK = 100                             # digits per task handed to a worker process


@functools.lru_cache(maxsize=None)
def _pyramid_matrices():
    """skimage's pyramid_expand(order=3) and pyramid_reduce(order=1) are separable: the zooms (and the
    reduce's blur) are 1-D linear maps, here as matrices built from the very ndimage calls skimage
    makes, applied to unit vectors. A whole stack is then a pair of batched matrix products."""
    def columns(fn, n):
        return np.stack([fn(e) for e in np.eye(n)], axis=1)
    up = columns(lambda e: ndi.zoom(e, SCALE, order=3, mode="mirror", grid_mode=True), 28)
    blur = columns(lambda e: ndi.gaussian_filter1d(e, SIGMA, mode="reflect", truncate=4.0), 28 * SCALE)
    down = columns(lambda e: ndi.zoom(e, 1 / SCALE, order=1, mode="mirror", grid_mode=True), 28 * SCALE)
    down = down @ blur
    return up, np.ascontiguousarray(up.T), down, np.ascontiguousarray(down.T)


def _expand(images):
    """Step 1 on a stack: uint8 [n,28,28] -> float [n,112,112] (= skimage pyramid_expand, order 3:
    cubic zoom, clipped to the input range, then a Gaussian blur)."""
    up, up_t, _, _ = _pyramid_matrices()
    x = images.astype(np.float64) / 255
    z = np.clip(up @ x @ up_t, x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True))
    return ndi.gaussian_filter(z, (0, SIGMA, SIGMA), mode="reflect", truncate=4.0)


def _reduce(hires):
    """Step 6 on a stack: [n,112,112] -> uint8 [n,28,28] (= skimage pyramid_reduce, order 1)."""
    _, _, down, down_t = _pyramid_matrices()
    return _to_uint8(down @ hires @ down_t)


@functools.lru_cache(maxsize=None)
def _medial_axis_tables():
    """The two 3x3-neighbourhood lookup tables that skimage's medial_axis rebuilds on every call (about
    1,500 tiny ndimage.label calls: most of its run time), built once. Same definitions as skimage:
    keep a pixel if removing it changes 8-connectivity or it has < 3 pixels around; corners last."""
    pats = np.array([(i >> np.arange(9)) & 1 for i in range(512)], bool).reshape(512, 3, 3)
    holed = pats.copy()
    holed[:, 1, 1] = False
    eight = np.ones((3, 3), bool)
    changes = np.array([ndi.label(p, eight)[1] != ndi.label(q, eight)[1] for p, q in zip(pats, holed)])
    keep = pats[:, 1, 1] & (changes | (pats.sum(axis=(1, 2)) < 3))
    return keep.astype(np.uint8), 9 - pats.sum(axis=(1, 2))


def _neighbourhood_index(binary):
    """Per pixel, the 9-bit code of its 3x3 neighbourhood (bit 3r + c for offset (r - 1, c - 1))."""
    pad = np.pad(binary, 1).astype(np.int64)
    h, w = binary.shape
    return sum(pad[r:r + h, c:c + w] << (3 * r + c) for r in range(3) for c in range(3))


@functools.lru_cache(maxsize=4096)
def _tiebreak(n):
    """skimage's tie-breaking order for n foreground pixels with rng=0 (depends on n alone)."""
    return np.random.default_rng(0).permutation(n)


def _medial_axis(binary):
    """skimage.morphology.medial_axis(binary, return_distance=True, rng=0), same output, faster: tables
    built once, and the work cropped to the digit's bounding box plus one pixel of background (which
    changes neither the distances nor the processing order)."""
    try:
        from skimage.morphology._skeletonize_various_cy import _skeletonize_loop
    except ImportError:  # private skimage API moved: fall back to the public (slow) function
        return morphology.medial_axis(binary, return_distance=True, rng=0)
    keep, cornerness = _medial_axis_tables()
    skel, dist = np.zeros(binary.shape, bool), np.zeros(binary.shape)
    box = _bbox(binary, 1)
    crop = binary[box]
    d = ndi.distance_transform_edt(crop)
    i, j = np.nonzero(crop)
    order = np.lexsort((_tiebreak(len(i)), cornerness[_neighbourhood_index(crop)][crop], d[crop]))
    result = np.ascontiguousarray(crop, np.uint8)
    _skeletonize_loop(result, i.astype(np.intp), j.astype(np.intp), order.astype(np.int32), keep)
    skel[box], dist[box] = result.astype(bool), d
    return skel, dist


def _bbox(mask, margin):
    """Slices of the bounding box of `mask` grown by `margin` (clipped to the image)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return np.s_[0:0, 0:0]
    return np.s_[max(rows[0] - margin, 0):rows[-1] + margin + 1, max(cols[0] - margin, 0):cols[-1] + margin + 1]


def _dilate(binary, r):
    """Dilation by disk(r) == pixels within r of the foreground; only the box r + 1 around the digit
    can change, so the distance transform runs there alone."""
    out, box = np.zeros_like(binary), _bbox(binary, r + 1)
    out[box] = ndi.distance_transform_edt(~binary[box]) <= r
    return out


def _render_digit(binary, ops, seed, index):
    """Steps 3-5 for one high-resolution binary digit: skeleton once, then every requested op."""
    out = {"plain": binary}
    if ops == ("plain",):
        return out
    skel, dist = _medial_axis(binary)                                  # 3. skeleton + distance map
    if not skel.any():
        return dict.fromkeys(ops, binary)
    thickness = 2 * dist[skel].mean() / SCALE                          # 4. mean thickness
    for op in ops:
        rng = np.random.default_rng([seed, RENDERINGS.index(op), index])
        if op == "thin":      # erosion by disk(r) == keep pixels farther than r from the background
            out[op] = dist > _thin_thick_radius(THIN, thickness)
        elif op == "thick":
            out[op] = _dilate(binary, _thin_thick_radius(THICK, thickness))
        elif op == "swell":   # warp only the disk |p - c| < R: everything else maps to itself
            out[op] = _swell_fast(binary, skel, thickness, rng)
        elif op == "fracture":
            out[op] = _fracture(binary, skel, dist, rng)
    return out


def _swell_fast(binary, skel, thickness, rng):
    centre = np.argwhere(skel)[rng.integers(skel.sum())]
    R = SWELL_RADIUS * np.sqrt(thickness) / 2 * SCALE
    (r0, c0), (r1, c1) = np.maximum(centre - int(R) - 1, 0), centre + int(R) + 2
    rows, cols = np.mgrid[r0:min(r1, binary.shape[0]), c0:min(c1, binary.shape[1])]
    src_r, src_c, inside = _swell_source(rows, cols, centre, thickness)
    out = binary.astype(np.float64)
    out[rows[inside], cols[inside]] = ndi.map_coordinates(out, [src_r[inside], src_c[inside]], order=1)
    return out


def _render_chunk(task):
    """Worker: all requested renderings of one chunk of digits, uint8 [n,28,28] each."""
    images, ops, seed, start = task
    binary = _binarise(_expand(images))                                # 1-2. upscale, binarise
    hires = {op: np.empty(binary.shape) for op in ops}
    for k, b in enumerate(binary):
        for op, img in _render_digit(b, ops, seed, start + k).items():
            if op in hires:
                hires[op][k] = img
    return {op: _reduce(h) for op, h in hires.items()}                 # 6. downscale


def _workers(workers):
    """Default: every core this process may use."""
    return workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


def render(images, ops, seed=0, workers=None, progress=True, desc="morpho"):
    """{op: uint8 [N,28,28]} for ops among RENDERINGS. Digit i's randomness comes from
    default_rng([seed, op_index, i]), so the output is the same for any number of workers."""
    images = np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28)
    tasks = [(images[s:s + CHUNK], tuple(ops), seed, s) for s in range(0, len(images), CHUNK)]
    workers = min(_workers(workers), max(len(tasks), 1))
    _pyramid_matrices(), _medial_axis_tables()          # build once here; forked workers inherit them
    bar = dict(total=len(tasks), desc=desc, unit="chunk", disable=not progress)
    if workers > 1:
        with multiprocessing.get_context().Pool(workers) as pool:
            parts = list(tqdm(pool.imap(_render_chunk, tasks), **bar))
    else:
        parts = list(tqdm(map(_render_chunk, tasks), **bar))
    return {op: np.concatenate([p[op] for p in parts]) if parts else np.zeros((0, 28, 28), np.uint8)
            for op in ops}


# --- morphometrics: how thick and how large a rendered digit is (the fidelity check) -------------
def morphometrics(images):
    """Steps 1-4 on rendered uint8 digits: (mean stroke thickness, area), both in low-res pixels."""
    binary = _binarise(_expand(np.asarray(images, np.uint8).reshape(-1, 28, 28)))
    thickness = np.empty(len(binary))
    for k, b in enumerate(binary):
        skel, dist = _medial_axis(b)
        thickness[k] = 2 * dist[skel].mean() / SCALE if skel.any() else 0.0
    return thickness, binary.sum(axis=(1, 2)) / SCALE ** 2


# --- benchmark: the cold build of all 70k digits, and the fast pipeline against the reference -------
MORPHO_TABLE = {"thin": (0.51, 0.39), "thick": (1.92, 1.91), "swell": (1.20, 1.25),
                "fracture": (0.94, 0.86)}   # morpho-ops.md: median thickness, area ratios


def _load_mnist(root):
    """The MNIST train and test images under `root` (MNIST/raw/*-ubyte, as torchvision keeps them)."""
    from torchvision.datasets import MNIST
    try:
        return {split: MNIST(root, train=split == "train").data.numpy() for split in ("train", "test")}
    except RuntimeError:
        raise FileNotFoundError(f"MNIST not found in {os.path.join(root, 'MNIST', 'raw')}; set --data-root "
                                f"or RGF_DATA_ROOT") from None


def _cold_build(images, seed, split, cache, workers):
    """What data.py does on an empty cache: every rendering of a split at once, one .npz each."""
    for r, arr in render(images, RENDERINGS, seed, workers, desc=f"{split} {'+'.join(RENDERINGS)}").items():
        atomic_write(os.path.join(cache, f"mnist-{split}-{r}.npz"), lambda fh: np.savez_compressed(
            fh, images=arr, sha1=hashlib.sha1(arr.tobytes()).hexdigest()))


def benchmark(args):
    """Cold-cache build of all 70k MNIST digits x (plain + 4 ops) in a temp folder, then the reference
    pipeline and the fast one on the first `sample` train digits, one process each: speed ratio,
    byte-identity and fidelity (medians of the morphometric ratios vs morpho-ops.md)."""
    splits = _load_mnist(args.data_root)
    n_all, workers, load0 = sum(map(len, splits.values())), _workers(args.workers), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rgf-bench-") as cache:
        t0, c0 = time.perf_counter(), sum(os.times()[:4])
        for split, images in splits.items():
            _cold_build(images, args.data_seed, split, cache, workers)
        wall, cpu = time.perf_counter() - t0, sum(os.times()[:4]) - c0
    sample = splits["train"][:args.sample]
    t0 = time.perf_counter()
    fast = render(sample, RENDERINGS, args.data_seed, workers=1, progress=False)
    t_fast, t0 = time.perf_counter() - t0, time.perf_counter()
    ref = {op: _reference_pipeline(sample, op, args.data_seed) for op in tqdm(RENDERINGS, desc="reference")}
    t_ref, per = time.perf_counter() - t0, 1000 / len(sample)
    print(f"\nMorpho-MNIST benchmark: {n_all} digits x {len(RENDERINGS)} renderings ({', '.join(RENDERINGS)})")
    print(f"  cold-cache build, {workers} workers (render + write .npz): {wall:.1f} s wall, {cpu:.1f} s CPU"
          f" (target <= 300 s); load average before {load0:.1f}, after {os.getloadavg()[0]:.1f}")
    print(f"  sample: first {len(sample)} train digits x 5 renderings, one process each: reference "
          f"{t_ref * per:.1f} ms/digit, fast {t_fast * per:.1f} ms/digit -> ratio {t_ref / t_fast:.1f}x"
          f" (target >= 4x)")
    print(f"  reference extrapolated to {n_all} digits on {workers} workers: {t_ref / len(sample) * n_all / workers:.0f} s"
          f" -> end-to-end ratio {t_ref / len(sample) * n_all / workers / wall:.1f}x")
    same = {op: int((ref[op] == fast[op]).all(axis=(1, 2)).sum()) for op in RENDERINGS}
    print("  byte-identical to the reference: " + ", ".join(f"{op} {n}/{len(sample)}" for op, n in same.items()))
    th0, a0 = morphometrics(fast["plain"])
    for op in MORPH_OPS:
        th, a = morphometrics(fast[op])
        print(f"  {op:>8}: median thickness ratio {np.median(th / th0):.3f} (spec {MORPHO_TABLE[op][0]}),"
              f" area ratio {np.median(a / a0):.3f} (spec {MORPHO_TABLE[op][1]})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", action="store_true", help="time the 70k x 5 build (the only command)")
    p.add_argument("--data-root", default=None, help="MNIST root (default $RGF_DATA_ROOT, else ./data)")
    p.add_argument("--data-seed", type=int, default=0, help="data seed of the perturbations (default 0)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--sample", type=int, default=300, help="digits timed with the reference (default 300)")
    p.error = fail                              # argparse errors: one line, exit 2
    args = p.parse_args(argv)
    if not args.benchmark:
        fail("nothing to do; accepted: --benchmark")
    for name in ("workers", "sample"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            fail(f"--{name} {getattr(args, name)} must be a positive integer")
    if args.data_seed < 0:
        fail(f"--data-seed {args.data_seed} must be an integer >= 0")
    args.data_root = args.data_root or os.environ.get("RGF_DATA_ROOT") or "./data"
    try:
        benchmark(args)
    except FileNotFoundError as e:
        fail(str(e))


if __name__ == "__main__":
    main()
