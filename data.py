"""Datasets of "Do Generative Models Learn Rare Generative Factors?" (paper sections 3-5).

MNIST with the five generative factors (colour and the four Morpho-MNIST perturbations: thinning,
thickening, swelling, fracture), the balanced dataset D_u and the skewed dataset D_r of section 4,
and the CompCars subset (Volkswagen / Toyota in black / white). Since it is the module that all the
others import, it also holds what every script shares: the small helpers (one-line errors, atomic
files, progress bars, locks, device and seeds) and the run steps that vae.py, gan.py and ddpm.py call
from their own training loops (common options, run folders, the data of a cell, checkpoints with RNG
states, samples). In reading order: helpers; data roots and loading; colour and the Morpho-MNIST
perturbations (a per-image reference pipeline, then the fast batched one); the rendering cache; the
datasets D_u, D_r, val and test; CompCars; the run steps; the command line.

    python data.py --factor thin --rare 1 --out preview.png   # labelled grid + per-class counts
    python data.py --benchmark                                  # time all 70k digits x 5 renderings
"""
import argparse
import contextlib
import copy
import csv
import fcntl
import functools
import hashlib
import io
import json
import math
import multiprocessing
import os
import random
import re
import sys
import tempfile

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage import draw, morphology, transform
from tqdm import tqdm

# --- configuration ---------------------------------------------------------------------------
FACTORS = ("colour", "thin", "thick", "swell", "fracture")
MORPH_OPS = ("thin", "thick", "swell", "fracture")
N_VAL = 2000                       # balanced validation digits held out of the MNIST train split
DATASETS = ("mnist", "cars")
MNIST_CLASSES = tuple(str(d) for d in range(10))
CAR_SIZE = 64                      # CompCars images are resized to 64x64


# --- shared helpers: one-line errors, atomic files, progress bars, locks, device and seeds ------
# Every script stops on bad input and writes its files through these few functions, so that each
# of those things is done one way. They sit here, at the bottom of the import chain
# (data -> oracles -> ztest -> vae, gan, ddpm), because data.py needs them too.
from study.runs import (fail, atomic_write, json_safe, save_json, save_text, text_grid, progress,  # noqa: E402
                        file_lock, NOT_TRAINING, identity, sample_key, check_identity, open_checkpoint, EMA,
                        restore, save_checkpoint, save_csv, save_config, stop_if_not_finite, log_epoch,
                        cached_samples, save_samples, save_grid, Checkpoint)




def pick_device(spec="auto", announce=True):
    """auto -> CUDA when available, else the CPU; cpu; cuda; cuda:N. An unavailable one raises ValueError."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    m = re.fullmatch(r"cpu|cuda(?::(\d+))?", str(spec))
    if not m:
        raise ValueError(f"--device {spec!r} not understood; accepted: auto, cpu, cuda, cuda:N")
    if spec != "cpu":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or int(m.group(1) or 0) >= n:
            raise ValueError(f"--device {spec}: no such CUDA device ({n} visible); accepted: auto, cpu"
                             + (f", cuda:0..{n - 1}" if n else ""))
    device = torch.device(spec)
    if device.type == "cuda" and device.index is None:   # the current device, never a hard-coded cuda:0
        device = torch.device("cuda", torch.cuda.current_device())
    if announce:
        what = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
        print(f"device: {device} ({what})")
    return device


def set_seed(seed, device="cpu"):
    """Seed Python, numpy and torch (CPU and CUDA), and return a torch.Generator on `device` seeded with
    `seed`: the explicit source of every random draw of the training code."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


def amp_dtype(device):
    """The autocast dtype: bf16 on CUDA GPUs that support it, else fp16 (which needs a GradScaler);
    None on the CPU, where AMP is off."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device, cpu_bf16=False):
    """Mixed precision for a forward pass: torch.autocast on CUDA (see amp_dtype); on the CPU a no-op,
    or bf16 autocast when cpu_bf16 is asked for and the CPU supports it (oneDNN bf16 kernels), which a
    model uses only where it measured faster."""
    device = torch.device(device)
    dtype = amp_dtype(device)
    if dtype:
        return torch.autocast("cuda", dtype=dtype)
    if cpu_bf16 and device.type == "cpu" and cpu_bf16_supported():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_bf16_supported():
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# --- data roots and loading ------------------------------------------------------------------
def data_root(arg=None):
    """The data root: `arg`, else $RGF_DATA_ROOT, else ./data."""
    return arg or os.environ.get("RGF_DATA_ROOT") or "./data"


def _writable_dir(path):
    """Create `path` if needed and prove it is writable. A folder whose permission bits say read-only
    counts as read-only even for root (who could write there anyway), so a read-only data root is
    never written into."""
    import stat
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.stat(probe).st_mode & stat.S_IWUSR:
        return False
    try:
        os.makedirs(path, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path, prefix=".probe-")
        os.close(fd)
        os.remove(name)
        return True
    except OSError:
        return False


def cache_root(root, arg=None):
    """Where caches live: `arg`, else $RGF_CACHE_DIR, else <root>/rgf-cache, else (read-only root)
    $XDG_CACHE_HOME/rgf or ~/.cache/rgf."""
    if arg or os.environ.get("RGF_CACHE_DIR"):
        return arg or os.environ["RGF_CACHE_DIR"]
    path = os.path.join(root, "rgf-cache")
    if _writable_dir(path):
        return path
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rgf")


def load_mnist(root, train):
    """MNIST train (60k) or test (10k) split via torchvision: uint8 [N,28,28], int64 [N]."""
    from torchvision.datasets import MNIST
    split = "train" if train else "t10k"
    raw = os.path.join(root, "MNIST", "raw")
    created = [d for d in (root, os.path.dirname(raw), raw) if not os.path.isdir(d)]
    try:
        ds = MNIST(root, train=train, download=True)
    except Exception as e:  # offline or unwritable root: torchvision could not fetch the files
        for d in reversed(created):  # leave no empty folders behind
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
        raise FileNotFoundError(f"MNIST not found in {raw} (expects {split}-images-idx3-ubyte and "
                                f"{split}-labels-idx1-ubyte; set --data-root or RGF_DATA_ROOT) and "
                                f"the download failed ({type(e).__name__})") from None
    return ds.data.numpy().astype(np.uint8), ds.targets.numpy().astype(np.int64)


# --- colour (the fifth factor, not a Morpho-MNIST operation) --------------------------------
def colourise(images, green):
    """uint8 [N,28,28] -> [N,3,28,28]: stroke in red (R = x) where green == 0, in green (G = x) where 1."""
    images = np.asarray(images, dtype=np.uint8)
    green = np.broadcast_to(np.asarray(green).astype(bool), images.shape[:1])
    out = np.zeros((images.shape[0], 3) + images.shape[1:], dtype=np.uint8)
    out[~green, 0] = images[~green]
    out[green, 1] = images[green]
    return out


# --- Morpho-MNIST perturbations (section 5.1; algorithms: shared/reference/morpho-ops.md) -------
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


def _render(images, ops, seed=0, workers=None, progress=True, desc="morpho"):
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


def plain(images):
    """The unperturbed rendering (steps 1, 2, 6): same blur as the perturbed digits."""
    return _render(images, ("plain",), workers=1, progress=False)["plain"]


def perturb(images, op, seed=0, workers=None, progress=True):
    """One Morpho-MNIST perturbation of uint8 [N,28,28] digits -> uint8 [N,28,28]."""
    if op not in MORPH_OPS:
        raise ValueError(f"unknown perturbation {op!r}; accepted: {', '.join(MORPH_OPS)}")
    return _render(images, (op,), seed, workers, progress, desc=op)[op]


def morphometrics(images):
    """Steps 1-4 on rendered uint8 digits: (mean stroke thickness, area), both in low-res pixels."""
    binary = _binarise(_expand(np.asarray(images, np.uint8).reshape(-1, 28, 28)))
    thickness = np.empty(len(binary))
    for k, b in enumerate(binary):
        skel, dist = _medial_axis(b)
        thickness[k] = 2 * dist[skel].mean() / SCALE if skel.any() else 0.0
    return thickness, binary.sum(axis=(1, 2)) / SCALE ** 2


# --- cache: .npz per (MNIST split, rendering, seed), keyed by recipe and input digest -----------
def _load_cached(path, key):
    """The cached images, or None when the file is missing, truncated, corrupt or of another recipe."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path) as z:
            images, stored_key, digest = z["images"], str(z["key"]), str(z["sha1"])
        if stored_key == key and digest == hashlib.sha1(images.tobytes()).hexdigest():
            return images
    except Exception:  # zip CRC errors, truncation, pickled junk: all mean "rebuild"
        pass
    print(f"data: cache file {path} is corrupt or stale; rebuilding it", file=sys.stderr)
    return None


def _renderings(images, op, seed, split, cache, workers=None, progress=True):
    """(plain, perturbed) renderings of one MNIST split, from the cache or built (and cached) now.
    Building one op builds every missing op of that split too: the skeleton is the shared cost."""
    digest = hashlib.sha1(images.tobytes()).hexdigest()
    keys = {r: hashlib.sha1(f"{RECIPE}|{r}|{0 if r == 'plain' else seed}|{digest}".encode())
            .hexdigest() for r in RENDERINGS}
    paths = {r: os.path.join(cache, f"mnist-{split}-{r}-seed{0 if r == 'plain' else seed}-"
                             f"n{len(images)}-{keys[r][:12]}.npz") for r in RENDERINGS}
    got = {r: _load_cached(paths[r], keys[r]) for r in ("plain", op)}
    if any(v is None for v in got.values()):
        todo = [r for r in got if got[r] is None]
        if op != "plain" and got[op] is None:   # the skeleton is the shared cost: add missing ops
            todo += [r for r in MORPH_OPS if r != op and _load_cached(paths[r], keys[r]) is None]
        print(f"data: rendering {', '.join(todo)} of {len(images)} MNIST {split} digits "
              f"(seed {seed}) into {cache}", file=sys.stderr)
        built = _render(images, todo, seed, workers, progress, desc=f"{split} {'+'.join(todo)}")
        for r, arr in built.items():
            try:
                atomic_write(paths[r], lambda fh: np.savez_compressed(
                    fh, images=arr, key=keys[r], sha1=hashlib.sha1(arr.tobytes()).hexdigest()))
            except OSError as e:
                print(f"data: could not write cache {paths[r]} ({e}); continuing without it",
                      file=sys.stderr)
        got.update({r: built[r] for r in got if got[r] is None})
    return got["plain"], got[op]


# --- datasets D_u, D_r, val, test (section 4) --------------------------------------------------
def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_args(factor, split, rare, p_in, p_out, limit=None):
    if factor not in FACTORS:
        raise ValueError(f"unknown factor {factor!r}; accepted: {', '.join(FACTORS)}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}; accepted: train, val, test")
    if rare is not None and not (_is_int(rare) and 0 <= rare <= 9):
        raise ValueError(f"rare class {rare!r} out of range; accepted: None or an integer 0..9")
    for name, p in (("p_in", p_in), ("p_out", p_out)):
        if not (isinstance(p, (int, float, np.floating)) and 0.0 <= p <= 1.0):
            raise ValueError(f"{name}={p!r} out of range; accepted: a number in [0, 1]")
    if limit is not None and not (_is_int(limit) and limit > 0):
        raise ValueError(f"limit={limit!r}; accepted: None or a positive integer")


def _holdout(y):
    """Indices (val, train) of the MNIST train split: a fixed, class-stratified hold-out of N_VAL digits
    (N//10 on small fixtures), independent of the data seed so no seed ever trains on val digits."""
    n_val = N_VAL if len(y) >= 10 * N_VAL else len(y) // 10
    rng = np.random.default_rng(20240531)
    val = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        val.append(rng.permutation(idx)[: min(len(idx), n_val // 10)])
    val = np.sort(np.concatenate(val))
    return val, np.setdiff1d(np.arange(len(y)), val)


def _assign(y, rare, p_in, p_out, rng):
    """Factor flags f (section 4). D_u (rare=None): exactly half of each class (up to one image) has
    f = 1. D_r: round(p_in * n_k) images of class k and round(p_out * n_c) of every other class c have
    f = 1 (the extreme skew of Definition 2 by default, the relaxed skew of Appendix E otherwise)."""
    f = np.zeros(len(y), dtype=np.int64)
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        p = 0.5 if rare is None else (p_in if c == rare else p_out)
        f[idx[: int(round(p * len(idx)))]] = 1
    return f


def make_dataset(factor, split="train", rare=None, p_in=1.0, p_out=0.0, seed=0, root=None,
                 cache_dir=None, limit=None):
    """(x uint8 [N,3,28,28], y int64 [N], f int64 [N]) for one factor and split.

    train: MNIST train minus the val hold-out, D_u (rare=None) or D_r (rare=k).
    val:   the held-out digits, always balanced (rare ignored).
    test:  every MNIST test digit in both versions, f=0 then f=1 (2 x 10,000).
    colour: f=1 green, f=0 red. Morphological factors: f=1 perturbed, f=0 plain, each digit red or
    green at random (section 5). `seed` is the data seed (factors, colours, perturbations);
    `limit` keeps only the first `limit` digits of the MNIST split (smoke runs, tests).
    """
    _check_args(factor, split, rare, p_in, p_out, limit)
    root = data_root(root)
    images, y = load_mnist(root, train=split != "test")
    if limit is not None:
        images, y = images[:limit], y[:limit]
    if split == "test":
        idx = np.concatenate([np.arange(len(y))] * 2)
        f = np.repeat(np.arange(2, dtype=np.int64), len(y))
    else:
        val, train = _holdout(y)
        idx = val if split == "val" else train
        kind = None if split == "val" else rare
        f = _assign(y[idx], kind, p_in, p_out, np.random.default_rng([seed, 1, int(split == "val")]))
    if factor == "colour":
        return colourise(images[idx], f), y[idx], f
    # morphological factor: plain rendering for f = 0, perturbed for f = 1, then a random colour
    flat, pert = _renderings(images, factor, seed, "test" if split == "test" else "train",
                             cache_root(root, cache_dir))
    grey = np.where(f[:, None, None] == 1, pert[idx], flat[idx])
    green = np.random.default_rng([seed, 2, ("train", "val", "test").index(split)]).random(len(idx)) < 0.5
    return colourise(grey, green), y[idx], f


def reference_digits(factor, which, rare=1, p_in=1.0, p_out=0.0, seed=0, root=None, cache_dir=None):
    """Real held-out digits distributed as D_u (which="u") or D_r ("r"): each MNIST test digit once, in the
    version (with or without the factor) that _assign gives it, as in D_u or D_r. The reference that a
    run's samples are compared with (the Fréchet distance of ztest.quality). (x uint8 [10000,3,28,28], y, f)."""
    x, y, f = make_dataset(factor, "test", seed=seed, root=root, cache_dir=cache_dir)
    n = len(y) // 2                       # the test split holds every digit twice: f = 0, then f = 1
    pick = _assign(y[:n], None if which == "u" else rare, p_in, p_out, np.random.default_rng([seed, 4]))
    idx = np.arange(n) + n * pick
    return x[idx], y[idx], f[idx]


# --- CompCars surveillance subset (section 5, Table B.2) ----------------------------------------
CARS_CLASSES = ("Volkswagen", "Toyota")            # y; the rare class for cars is 0 (Volkswagen)
CARS_FILES = ("image", "sv_make_model_name.mat", "color_list.mat", "train_surveillance.txt",
              "test_surveillance.txt")


def cars_dir(root):
    """The sv_data folder under `root` (or `root` itself), checked for every file CompCars needs."""
    found = [d for d in (os.path.join(root, "sv_data"), os.path.join(root, "CompCars", "sv_data"), root)
             if os.path.isdir(os.path.join(d, "image"))]
    if not found:
        raise FileNotFoundError(f"CompCars not found under {root}: expects sv_data/ holding "
                                f"{', '.join(CARS_FILES)}")
    missing = [f for f in CARS_FILES if not os.path.exists(os.path.join(found[0], f))]
    if missing:
        raise FileNotFoundError(f"CompCars folder {found[0]} is incomplete: missing {', '.join(missing)}")
    return found[0]


def _mat_cells(path):
    from scipy.io import loadmat
    return next(v for k, v in loadmat(path).items() if not k.startswith("__"))


def _cell(c):
    """A MATLAB cell's content (loadmat nests strings and numbers in arrays)."""
    while isinstance(c, np.ndarray):
        c = c.flat[0] if c.size else ""
    return c.strip() if isinstance(c, str) else c


def _rel(path):
    path = str(path).strip().replace("\\", "/")
    return path[len("image/"):] if path.startswith("image/") else path


def _compcars_index(folder):
    """[(relative path, y, f, split)] of every black or white Volkswagen or Toyota image."""
    makes = [str(_cell(row[0])).casefold() for row in _mat_cells(os.path.join(folder, "sv_make_model_name.mat"))]
    split_of = {}
    for split in ("train", "test"):
        with open(os.path.join(folder, f"{split}_surveillance.txt")) as fh:
            split_of.update((_rel(line), split) for line in fh if line.strip())
    wanted = [m.casefold() for m in CARS_CLASSES]
    rows = []
    for path, code in _mat_cells(os.path.join(folder, "color_list.mat")):
        rel, code = _rel(_cell(path)), int(_cell(code))    # colour code: 0 black, 1 white, -1 unknown
        model = int(rel.split("/")[0])                       # folder i <-> row i - 1 of the make table
        make = makes[model - 1] if 0 < model <= len(makes) else ""
        if code in (0, 1) and make in wanted and rel in split_of:
            rows.append((rel, wanted.index(make), code, split_of[rel]))
    return rows


def load_compcars(root, size=64, split=None):
    """Black and white Volkswagen / Toyota CompCars images, resized to size x size RGB:
    (x uint8 [N,3,S,S], y int64 (0 Volkswagen, 1 Toyota), f int64 (1 white, 0 black)).
    split: None (all), "train" or "test" (the dataset's own surveillance lists)."""
    from PIL import Image
    if split not in (None, "train", "test"):
        raise ValueError(f"unknown CompCars split {split!r}; accepted: None, train, test")
    folder = cars_dir(root)
    rows = [r for r in _compcars_index(folder) if split in (None, r[3])]
    if not rows:
        raise FileNotFoundError(f"CompCars folder {folder} has no black or white Volkswagen/Toyota images")
    x = np.empty((len(rows), 3, size, size), np.uint8)
    for k, (rel, *_) in enumerate(rows):
        path = os.path.join(folder, "image", rel)
        if not os.path.exists(path):
            raise FileNotFoundError(f"CompCars folder {folder} is incomplete: missing image/{rel}")
        with Image.open(path) as im:
            x[k] = np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC)).transpose(2, 0, 1)
    return x, np.array([r[1] for r in rows], np.int64), np.array([r[2] for r in rows], np.int64)


def make_cars_dataset(root, rare=False, split="train", size=64, seed=0):
    """CompCars D_u (rare=False: both makes in both colours, equal cells) or D_r (rare=True: white
    Volkswagen and black Toyota only, as many per make as D_u has, when the data allow); the test split
    is every listed test image. Same (x, y, f) as load_compcars."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown CompCars split {split!r}; accepted: train, test")
    if not (rare is None or isinstance(rare, bool) or rare == 0):
        raise ValueError(f"rare={rare!r} for cars; accepted: False/None (D_u), True or 0 (D_r: the rare "
                         f"class is 0, Volkswagen)")
    rare = rare is True or (rare is not None and rare is not False)   # class 0 given as an int
    x, y, f = load_compcars(root, size, split)
    if split == "test":
        return x, y, f
    rng = np.random.default_rng([seed, 3])
    cells = {(c, v): rng.permutation(np.flatnonzero((y == c) & (f == v))) for c in (0, 1) for v in (0, 1)}
    m = min(len(i) for i in cells.values())
    if rare:   # the rare factor (white) on the rare class (Volkswagen) only
        n = min(len(cells[0, 1]), len(cells[1, 0]), 2 * m or len(y))
        idx = np.concatenate([cells[0, 1][:n], cells[1, 0][:n]])
    else:
        idx = np.concatenate([i[:m] for i in cells.values()])
    if not len(idx):
        raise FileNotFoundError(f"CompCars under {root} lacks images for one make/colour cell")
    idx = np.sort(idx)
    return x[idx], y[idx], f[idx]


# --- the run steps the model scripts share ----------------------------------------------------
# vae.py, gan.py and ddpm.py own their training loops. What all three need is written once here, as small
# functions with explicit arguments, in the order a script calls them: options, run folders, the data,
# checkpoints with RNG states, samples. The last step, ztest.evaluate, labels the samples and runs eq. 1.

# Options that never change a trained model; every other option is part of a checkpoint's identity.
# Common presets; a model script's presets override them, an explicit option overrides both.
BASE_PRESETS = {"quick": {}, "smoke": {"samples": 100, "subset": 300}}
MIN_N = 30                    # ztest's minimum-count rule: fewer samples of a class is "too few samples"
SAMPLING_SEED = 1_000_003     # sampling draws from its own stream, seeded with seed + SAMPLING_SEED


def common_parser(doc, epochs, batch_size, lr, samples=1000):
    """The options every model script shares (defaults: the paper's protocol). `epochs`, `batch_size`
    and `lr` are the model's own defaults; the model adds its options to the returned parser."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--factor", default="colour", choices=FACTORS, help="generative factor (default: colour)")
    a("--dataset", default="mnist", choices=DATASETS, help="mnist or the CompCars subset (default: mnist)")
    a("--rare", type=int, default=1, help="class k with the rare factor in D_r: 0..9 for MNIST, 0 "
      "(Volkswagen) for cars (default: 1; 0 with --dataset cars)")
    a("--p-in", type=float, default=1.0, help="share of class k with the factor in D_r (Appendix E; default: 1.0)")
    a("--p-out", type=float, default=0.0, help="share of other classes with the factor in D_r (default: 0.0)")
    a("--samples", type=int, default=samples, help=f"M, images sampled per model (default: {samples})")
    a("--seed", type=int, default=0, help="training and sampling seed (default: 0)")
    a("--data-seed", type=int, default=0, help="seed of the datasets' factor assignment (default: 0)")
    a("--data-root", default=None, help="MNIST root (default: $RGF_DATA_ROOT, else ./data)")
    a("--cache-dir", default=None, help="cache for perturbed digits and oracles (default: <data-root>/rgf-cache)")
    a("--out", default="runs", help="output folder (default: runs)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto = CUDA when present)")
    a("--epochs", type=int, default=epochs, help=f"training epochs per model (default: {epochs})")
    a("--batch-size", type=int, default=batch_size, help=f"batch size (default: {batch_size})")
    a("--lr", type=float, default=lr, help=f"learning rate (default: {lr:g})")
    a("--subset", type=int, default=0, help="build D_u and D_r from the first N MNIST training digits; "
      "0 = all (default: 0)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="CPU preset: fewer epochs / a subset (default: off)")
    g.add_argument("--smoke", action="store_true", help="seconds-long run for the tests (default: off)")
    a("--force", action="store_true", help="retrain even when checkpoints or results exist (default: off)")
    a("--stage", default="both", choices=("both", "u", "r"), help="both: D_u if needed, then D_r, then the "
      "z-test; u: only the D_u model; r: only the D_r model (default: both)")
    a("--min-n", type=int, default=MIN_N, help=f"z-table: a class with fewer samples in either model is 'too "
      f"few samples' (n), never L; 0 = the paper's rule (default: {MIN_N})")
    a("--oracles", default="robust", choices=("robust", "paper"), help="the oracles' training recipe: robust "
      "(degraded images too, ours) or paper (section 5.2 exactly); see oracles.py (default: robust)")
    return p


def _explicit(parser, argv):
    """The destinations the user set on the command line (parse again with every default suppressed)."""
    saved = [(a, a.default) for a in parser._actions]
    try:
        for a, _ in saved:
            a.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv)))
    finally:
        for a, d in saved:
            a.default = d


def _check_common(a):
    if a.dataset == "cars":
        if a.rare != 0:
            return f"--rare {a.rare} is not available for cars; accepted: 0 (Volkswagen)"
        if a.factor != "colour":
            return f"--factor {a.factor} is not available for cars; accepted: colour"
        if (a.p_in, a.p_out) != (1.0, 0.0):
            return "--p-in/--p-out are MNIST-only; cars use the paper's extreme skew"
    elif not 0 <= a.rare <= 9:
        return f"--rare {a.rare} out of range; accepted: 0..9"
    for name, v in (("--p-in", a.p_in), ("--p-out", a.p_out)):
        if not 0.0 <= v <= 1.0:
            return f"{name} {v:g} out of range; accepted: a number in [0, 1]"
    for name, v, lo in (("--samples", a.samples, 1), ("--epochs", a.epochs, 1), ("--batch-size", a.batch_size, 1),
                        ("--subset", a.subset, 0), ("--seed", a.seed, 0), ("--data-seed", a.data_seed, 0),
                        ("--min-n", a.min_n, 0)):
        if v < lo:
            return f"{name} {v} out of range; accepted: an integer >= {lo}"
    if not a.lr > 0:
        return f"--lr {a.lr:g} out of range; accepted: a number > 0"
    try:
        pick_device(a.device, announce=False)
    except ValueError as e:
        return str(e)
    return None


def parse_args(parser, argv=None, presets=None, check=None):
    """Parse, apply the --quick / --smoke preset to every option the user did not set explicitly, then
    validate (common checks, then check(args) -> error string or None). Errors: one line, exit 2."""
    parser.error = fail                  # argparse's own errors: one line too
    args = parser.parse_args(argv)
    explicit = _explicit(parser, argv)
    for mode in ("quick", "smoke"):
        if getattr(args, mode):
            for k, v in {**BASE_PRESETS[mode], **(presets or {}).get(mode, {})}.items():
                if not hasattr(args, k):
                    raise ValueError(f"preset {mode!r} sets unknown option {k!r}")
                if k not in explicit:
                    setattr(args, k, v)
    if args.dataset == "cars" and "rare" not in explicit:
        args.rare = 0
    msg = _check_common(args) or (check(args) if check else None)
    if msg:
        fail(msg)
    return args


def cell_names(args):
    """Folders of the D_u model (shared by every rare class) and of the D_r cell, e.g.
    colour-balanced-seed0 and colour-rare1-seed0 (colour-rare1-pin0.9-pout0.1-seed0, cars-rare0-seed0)."""
    pre = "cars" if args.dataset == "cars" else args.factor
    ds = f"-ds{args.data_seed}" if args.data_seed else ""
    skew = "" if (args.p_in, args.p_out) == (1.0, 0.0) else f"-pin{args.p_in:g}-pout{args.p_out:g}"
    return f"{pre}-balanced{ds}-seed{args.seed}", f"{pre}-rare{args.rare}{skew}{ds}-seed{args.seed}"


def run_dirs(args, run_name):
    """{"u": <out>/<run_name>/<factor>-balanced-seed<s>, "r": <out>/<run_name>/<factor>-rare<k>-seed<s>}.
    The D_u model is shared by every rare class k."""
    u, r = cell_names(args)
    return {"u": os.path.join(args.out, run_name, u), "r": os.path.join(args.out, run_name, r)}


def stages(args):
    """The models this run trains, in the order of section 4: D_u, then D_r (--stage picks one)."""
    return ("u", "r") if args.stage == "both" else (args.stage,)


def load_split(args, which, device):
    """D_u (which="u"), D_r ("r") or the balanced validation digits ("val") built by py with the
    data seed, as tensors on `device`: x float [N,3,H,W] in [0, 1], y and f int64. --subset limits the
    MNIST digits used. Data that cannot be built stop the run with one line (exit 2)."""
    try:
        if args.dataset == "cars":
            # CompCars has no held-out validation split: the paper's 185 validation cars are its test images
            x, y, f = make_cars_dataset(data_root(args.data_root), rare=which == "r",
                                             split="test" if which == "val" else "train", size=CAR_SIZE,
                                             seed=args.data_seed)
            if args.subset and which != "val":
                keep = np.sort(np.random.default_rng(args.data_seed).permutation(len(y))[: args.subset])
                x, y, f = x[keep], y[keep], f[keep]
        else:
            x, y, f = make_dataset(args.factor, "val" if which == "val" else "train",
                                        rare=args.rare if which == "r" else None, p_in=args.p_in,
                                        p_out=args.p_out, seed=args.data_seed, root=args.data_root,
                                        cache_dir=args.cache_dir, limit=args.subset or None)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    if tuple(x.shape[1:]) != image_shape(args):
        fail(f"{which} images have shape {tuple(x.shape[1:])}, expected {image_shape(args)}")
    x = torch.from_numpy(np.ascontiguousarray(x)).to(device).float().div_(255)
    return x, torch.as_tensor(y, device=device), torch.as_tensor(f, device=device)


def image_shape(args):
    return (3, CAR_SIZE, CAR_SIZE) if args.dataset == "cars" else (3, 28, 28)


def sampling_generator(seed, device):
    """Sampling draws from its own stream, so that M samples do not depend on how training ended."""
    return torch.Generator(device=device).manual_seed(seed + SAMPLING_SEED)






# --- command line: preview grid and benchmark ----------------------------------------------------
MORPHO_TABLE = {"thin": (0.51, 0.39), "thick": (1.92, 1.91), "swell": (1.20, 1.25),
                "fracture": (0.94, 0.86)}   # morpho-ops.md: median thickness, area ratios


def _grid(x, y, f, classes, per=4):
    """One row per class: `per` examples with f = 0, then `per` with f = 1 (blank when none)."""
    s = x.shape[-1]
    canvas = np.full((classes * (s + 2), 2 * per * (s + 2), 3), 40, np.uint8)
    for c in range(classes):
        for v in (0, 1):
            for k, i in enumerate(np.flatnonzero((y == c) & (f == v))[:per]):
                col = (v * per + k) * (s + 2)
                canvas[c * (s + 2):c * (s + 2) + s, col:col + s] = x[i].transpose(1, 2, 0)
    return canvas


def preview(args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if args.dataset == "cars":
        names, sets = CARS_CLASSES, [("D_u", make_cars_dataset(args.data_root, False, seed=args.seed)),
                                     ("D_r", make_cars_dataset(args.data_root, True, seed=args.seed))]
        title_r = "D_r: white only on Volkswagen"
    else:
        kw = dict(seed=args.seed, root=args.data_root, cache_dir=args.cache_dir, limit=args.limit)
        names = [str(c) for c in range(10)]
        sets = [("D_u", make_dataset(args.factor, **kw)),
                ("D_r", make_dataset(args.factor, rare=args.rare, p_in=args.p_in, p_out=args.p_out, **kw))]
        title_r = f"D_r: {args.factor} on digit {args.rare} (p_in={args.p_in}, p_out={args.p_out})"
    print(f"{'class':>10} " + " ".join(f"{n + ' f=' + str(v):>10}" for n, _ in sets for v in (1, 0)))
    for c, name in enumerate(names):
        print(f"{name:>10} " + " ".join(f"{int(((s[1] == c) & (s[2] == v)).sum()):>10}"
                                        for _, s in sets for v in (1, 0)))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.6 * len(names) + 1.5))
    for ax, (name, (x, y, f)), title in zip(axes, sets, ("D_u: balanced", title_r)):
        g = _grid(x, y, f, len(names))
        step = g.shape[0] / len(names)
        ax.imshow(g)
        ax.set_yticks(np.arange(len(names)) * step + step / 2, names)
        ax.set_xticks([g.shape[1] / 4, 3 * g.shape[1] / 4], ["f = 0", "f = 1"])
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(args.out, lambda fh: fig.savefig(fh, format="png", dpi=100))
    print(f"saved {args.out}")


def benchmark(args):
    """Cold-cache build of all 70k MNIST digits x (plain + 4 ops) in a temp folder, then the reference
    pipeline and the fast one on the first `sample` train digits, one process each: speed ratio,
    byte-identity and fidelity (medians of the morphometric ratios vs morpho-ops.md)."""
    import time
    splits = {"train": load_mnist(args.data_root, True)[0], "test": load_mnist(args.data_root, False)[0]}
    n_all, workers, load0 = sum(map(len, splits.values())), _workers(args.workers), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rgf-bench-") as cache:
        t0, c0 = time.perf_counter(), sum(os.times()[:4])
        for split, images in splits.items():
            _renderings(images, "thin", args.seed, split, cache, workers)
        wall, cpu = time.perf_counter() - t0, sum(os.times()[:4]) - c0
    sample = splits["train"][:args.sample]
    t0 = time.perf_counter()
    fast = _render(sample, RENDERINGS, args.seed, workers=1, progress=False)
    t_fast, t0 = time.perf_counter() - t0, time.perf_counter()
    ref = {op: _reference_pipeline(sample, op, args.seed) for op in tqdm(RENDERINGS, desc="reference")}
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
    import argparse
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factor", default="colour", help=f"one of {', '.join(FACTORS)} (default colour)")
    p.add_argument("--dataset", default="mnist", help="mnist or cars (default mnist)")
    p.add_argument("--rare", type=int, default=1, help="rare digit k of D_r, 0..9 (default 1)")
    p.add_argument("--p-in", type=float, default=1.0, help="P(f=1) in class k (default 1.0)")
    p.add_argument("--p-out", type=float, default=0.0, help="P(f=1) in other classes (default 0.0)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--limit", type=int, default=None, help="use the first N MNIST digits (default all)")
    p.add_argument("--data-root", default=None, help="data root (default $RGF_DATA_ROOT, else ./data)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default <data-root>/rgf-cache)")
    p.add_argument("--out", default="preview.png", help="preview image (default preview.png)")
    p.add_argument("--benchmark", action="store_true", help="time the 70k x 5 build (default off)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--sample", type=int, default=300, help="benchmark reference sample (default 300)")
    p.error = fail                              # argparse errors: one line, exit 2
    args = p.parse_args(argv)
    try:
        if args.dataset not in ("mnist", "cars"):
            raise ValueError(f"unknown dataset {args.dataset!r}; accepted: mnist, cars")
        for name in ("limit", "workers", "sample"):
            if getattr(args, name) is not None and getattr(args, name) < 1:
                raise ValueError(f"--{name} {getattr(args, name)} must be a positive integer")
        if args.dataset == "mnist":   # fail on bad values before any data work
            _check_args(args.factor, "train", args.rare, args.p_in, args.p_out)
        args.data_root = data_root(args.data_root)
        benchmark(args) if args.benchmark else preview(args)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))


if __name__ == "__main__":
    main()
