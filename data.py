"""Data of "Do Generative Models Learn Rare Generative Factors?" (paper sections 3-5).

MNIST with its five generative factors (colour, and the Morpho-MNIST thinning, thickening, swelling and
fracture of section 5.1), the balanced D_u and the skewed D_r of section 4 with the validation and test
digits, the cache of perturbed digits, the CompCars subset of section 5 (Volkswagen / Toyota in black /
white); then the few helpers every model script calls (options, run folders, the data of a run). The
Morpho-MNIST rendering engine lives in study/morpho.py; the run plumbing (atomic files, locks, device,
seeds, mixed precision, the Checkpoint of a training run) in study/runs.py, re-exported here as data.*.

    python data.py --factor thin --rare 1 --out-dir .   # D_u / D_r grid (./preview.png) + per-class counts
    python data.py --factor thin --rare 1 --export --out-dir gen   # gen/du.npz, gen/dr.npz (docs/own-generator.md)
"""
import argparse
import hashlib
import os
import stat
import sys
import tempfile

import numpy as np
import torch

from study import cli, morpho
from study.mixture import fit_gmm, sample_gmm  # noqa: F401 (re-exported: vae.py --prior gmm)
from study.morpho import MORPH_OPS, RECIPE, RENDERINGS, morphometrics  # noqa: F401 (re-exported)
from study.runs import (EMA, Checkpoint, atomic_write, fail, file_lock, json_safe, progress, save_preview,  # noqa
                        save_csv, save_json, save_text, text_grid, pick_device, set_seed, amp_dtype, autocast,
                        cached_samples, save_samples, check_identity, sample_key,   # a finished cell; vae.py's two priors
                        SMOKE_LINE, check_paths, output_problem)      # the command lines' paths, checked

# --- configuration ---------------------------------------------------------------------------
FACTORS = ("colour",) + MORPH_OPS
N_VAL = 2000                       # balanced validation digits held out of the MNIST train split
DATASETS = ("mnist", "cars")
MNIST_CLASSES = tuple(str(d) for d in range(10))
CAR_SIZE = 64                      # CompCars images are resized to 64x64


# --- data roots and loading ------------------------------------------------------------------
def data_root(arg=None):
    """The data root: `arg`, else $RGF_DATA_ROOT, else ./data."""
    return arg or os.environ.get("RGF_DATA_ROOT") or "./data"


def _writable_dir(path):
    """Create `path` if needed and prove it is writable. A folder whose permission bits say read-only
    counts as read-only even for root, so a read-only data root is never written into."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.stat(probe).st_mode & stat.S_IWUSR:
        return False
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
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


# --- the Morpho-MNIST perturbations (section 5.1; rendered by study/morpho.py) ------------------
def plain(images):
    """The unperturbed rendering (upscale, binarise, downscale): same blur as the perturbed digits."""
    return morpho.render(images, ("plain",), workers=1, progress=False)["plain"]


def perturb(images, op, seed=0, workers=None, progress=True):
    """One Morpho-MNIST perturbation of uint8 [N,28,28] digits -> uint8 [N,28,28] (digit i draws from
    default_rng([seed, op_index, i]): the same bytes for any number of worker processes)."""
    if op not in MORPH_OPS:
        raise ValueError(f"unknown perturbation {op!r}; accepted: {', '.join(MORPH_OPS)}")
    return morpho.render(images, (op,), seed, workers, progress, desc=op)[op]


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
    """(plain, perturbed) renderings of one MNIST split, from the cache or built (and cached) now; keyed
    by morpho.RECIPE, so that a change to the rendering parameters invalidates the cache."""
    digest = hashlib.sha1(images.tobytes()).hexdigest()
    keys = {r: hashlib.sha1(f"{morpho.RECIPE}|{r}|{0 if r == 'plain' else seed}|{digest}".encode())
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
        built = morpho.render(images, todo, seed, workers, progress, desc=f"{split} {'+'.join(todo)}")
        for r, arr in built.items():
            try:
                atomic_write(paths[r], lambda fh: np.savez_compressed(
                    fh, images=arr, key=keys[r], sha1=hashlib.sha1(arr.tobytes()).hexdigest()))
            except OSError as e:
                print(f"data: could not write cache {paths[r]} ({e}); continuing without it", file=sys.stderr)
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
        raise ValueError(f"rare digit {rare!r} (--rare) out of range; accepted: 0..9")    # None: D_u
    for name, p in (("p_in", p_in), ("p_out", p_out)):
        if not (isinstance(p, (int, float, np.floating)) and 0.0 <= p <= 1.0):
            raise ValueError(f"{name} {p!r} (--{name.replace('_', '-')}) out of range; accepted: a number in [0, 1]")
    if limit is not None and not (_is_int(limit) and limit > 0):
        raise ValueError(f"limit={limit!r}; accepted: None or a positive integer")


def _holdout(y):
    """Indices (val, train) of the MNIST train split: a fixed, class-stratified hold-out of N_VAL digits
    (N//10 on small fixtures), independent of the data seed so no seed ever trains on val digits."""
    n_val = N_VAL if len(y) >= 10 * N_VAL else len(y) // 10
    rng = np.random.default_rng(20240531)
    val = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[: n_val // 10] for c in range(10)]))
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
    run's samples are compared with (the Fréchet distance). (x uint8 [10000,3,28,28], y, f)."""
    x, y, f = make_dataset(factor, "test", seed=seed, root=root, cache_dir=cache_dir)
    n = len(y) // 2                       # the test split holds every digit twice: f = 0, then f = 1
    pick = _assign(y[:n], None if which == "u" else rare, p_in, p_out, np.random.default_rng([seed, 4]))
    idx = np.arange(n) + n * pick
    return x[idx], y[idx], f[idx]


# --- CompCars surveillance subset (section 5, Table B.2) ----------------------------------------
CARS_CLASSES = ("Volkswagen", "Toyota")            # y; the rare class for cars is 0 (Volkswagen)


def class_names(dataset):
    """The class names of a dataset: the ten digits, or the two makes of CompCars."""
    return CARS_CLASSES if dataset == "cars" else MNIST_CLASSES
CARS_FILES = ("image", "sv_make_model_name.mat", "color_list.mat", "train_surveillance.txt", "test_surveillance.txt")


def cars_dir(root):
    """The sv_data folder under `root` (or `root` itself), checked for every file CompCars needs."""
    found = [d for d in (os.path.join(root, "sv_data"), os.path.join(root, "CompCars", "sv_data"), root)
             if os.path.isdir(os.path.join(d, "image"))]
    if not found:
        raise FileNotFoundError(f"CompCars not found under {root}: expects sv_data/ holding {', '.join(CARS_FILES)}")
    missing = [f for f in CARS_FILES if not os.path.exists(os.path.join(found[0], f))]
    if missing:
        raise FileNotFoundError(f"CompCars folder {found[0]} is incomplete: missing {', '.join(missing)}")
    return found[0]


def _mat_cells(path):
    """The one variable of a .mat file (a MATLAB cell array)."""
    from scipy.io import loadmat
    return next(v for k, v in loadmat(path).items() if not k.startswith("__"))


def _cell(c):
    """A cell's content, unwrapped (loadmat nests strings and numbers in arrays)."""
    while isinstance(c, np.ndarray):
        c = c.flat[0] if c.size else ""
    return c.strip() if isinstance(c, str) else c


def _compcars_index(folder):
    """[(path under image/, y, f, split)] of every black or white Volkswagen or Toyota image."""
    rel = lambda p: str(p).strip().replace("\\", "/").removeprefix("image/")
    makes = [str(_cell(row[0])).casefold() for row in _mat_cells(os.path.join(folder, "sv_make_model_name.mat"))]
    split_of, wanted, rows = {}, [m.casefold() for m in CARS_CLASSES], []
    for split in ("train", "test"):
        with open(os.path.join(folder, f"{split}_surveillance.txt")) as fh:
            split_of.update((rel(line), split) for line in fh if line.strip())
    for path, code in _mat_cells(os.path.join(folder, "color_list.mat")):
        path, code = rel(_cell(path)), int(_cell(code))      # colour code: 0 black, 1 white, -1 unknown
        model = int(path.split("/")[0])                      # folder i <-> row i - 1 of the make table
        make = makes[model - 1] if 0 < model <= len(makes) else ""
        if code in (0, 1) and make in wanted and path in split_of:
            rows.append((path, wanted.index(make), code, split_of[path]))
    return rows


def load_compcars(root, size=64, split=None):
    """Black and white Volkswagen / Toyota CompCars images, resized to size x size RGB: (x uint8
    [N,3,S,S], y int64 (0 Volkswagen, 1 Toyota), f int64 (1 white, 0 black)). split: None (all),
    "train" or "test" (the dataset's own surveillance lists)."""
    from PIL import Image
    if split not in (None, "train", "test"):
        raise ValueError(f"unknown CompCars split {split!r}; accepted: None, train, test")
    folder = cars_dir(root)
    rows = [r for r in _compcars_index(folder) if split in (None, r[3])]
    if not rows:
        raise FileNotFoundError(f"CompCars folder {folder} has no black or white Volkswagen/Toyota images")
    x = np.empty((len(rows), 3, size, size), np.uint8)
    for k, (rel, *_) in enumerate(rows):
        if not os.path.exists(path := os.path.join(folder, "image", rel)):
            raise FileNotFoundError(f"CompCars folder {folder} is incomplete: missing image/{rel}")
        with Image.open(path) as im:
            x[k] = np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC)).transpose(2, 0, 1)
    return x, np.array([r[1] for r in rows], np.int64), np.array([r[2] for r in rows], np.int64)


def make_cars_dataset(root, rare=False, split="train", size=64, seed=0):
    """CompCars D_u (rare=False: both makes in both colours, equal cells) or D_r (rare=True or 0: white
    Volkswagen and black Toyota only, as many per make as D_u has, when the data allow); the test split
    is every listed test image. Same (x, y, f) as load_compcars."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown CompCars split {split!r}; accepted: train, test")
    if not (rare is None or isinstance(rare, bool) or rare == 0):
        raise ValueError(f"rare={rare!r} for cars; accepted: False/None (D_u), True or 0 (D_r: the rare "
                         f"class is 0, Volkswagen)")
    x, y, f = load_compcars(root, size, split)
    if split == "test":
        return x, y, f
    rng = np.random.default_rng([seed, 3])
    cells = {(c, v): rng.permutation(np.flatnonzero((y == c) & (f == v))) for c in (0, 1) for v in (0, 1)}
    m = min(len(i) for i in cells.values())
    if rare is not None and rare is not False:   # D_r: the rare factor (white) on the rare class (Volkswagen)
        n = min(len(cells[0, 1]), len(cells[1, 0]), 2 * m or len(y))
        idx = np.concatenate([cells[0, 1][:n], cells[1, 0][:n]])
    else:
        idx = np.concatenate([i[:m] for i in cells.values()])
    if not len(idx):
        raise FileNotFoundError(f"CompCars under {root} lacks images for one make/colour cell")
    idx = np.sort(idx)
    return x[idx], y[idx], f[idx]


# --- what the model scripts share: options, run folders, the data of a cell ----------------------
# Common presets; a model script's presets override them, an explicit option overrides both.
BASE_PRESETS = {"quick": {}, "cpu_full": {}, "smoke": {"samples": 100, "subset": 300}}
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
    a("--runs", default="runs", metavar="DIR", help="the runs folder: a sub-folder per model and cell (default: runs)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto = CUDA when present)")
    a("--epochs", type=int, default=epochs, help=f"training epochs per model (default: {epochs})")
    a("--batch-size", type=int, default=batch_size, help=f"batch size (default: {batch_size})")
    a("--lr", type=float, default=lr, help=f"learning rate (default: {lr:g})")
    a("--subset", type=int, default=0, help="build D_u and D_r from the first N MNIST training digits; "
      "0 = all (default: 0)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="CPU preset: fewer epochs / a subset (default: off)")
    g.add_argument("--cpu-full", action="store_true", help="--quick, longer where a model needs it to fit its "
                   "data (docs/models.md) (default: off)")
    g.add_argument("--smoke", action="store_true", help="seconds-long run for the tests (default: off)")
    a("--force", action="store_true", help="retrain even when checkpoints or results exist (default: off)")
    a("--stage", default="all", choices=("all", "u", "r"), help="all: D_u if needed, then D_r, then the "
      "z-test; u: only the D_u model; r: only the D_r model (default: all)")
    a("--min-n", type=int, default=MIN_N, help=f"z-table: a class with fewer samples in either model is 'too "
      f"few samples' (n), never L; 0 = the paper's rule (default: {MIN_N})")
    a("--oracles", default="robust", choices=("robust", "paper"), help="the oracles' training recipe: robust "
      "(degraded images too, ours) or paper (section 5.2 exactly); see oracles.py (default: robust)")
    return p


def _check_common(a):
    """The first error in the common options, as one line, or None."""
    if a.dataset == "cars" and a.rare != 0:
        return f"--rare {a.rare} is not available for cars; accepted: 0 (Volkswagen)"
    if a.dataset == "cars" and a.factor != "colour":
        return f"--factor {a.factor} is not available for cars; accepted: colour"
    if a.dataset == "cars" and (a.p_in, a.p_out) != (1.0, 0.0):
        return "--p-in/--p-out are MNIST-only; cars use the paper's extreme skew"
    if a.dataset != "cars" and not 0 <= a.rare <= 9:
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


def parse_args(parser, argv=None, presets=None, check=None):
    """Parse, apply the --quick / --smoke preset to every option the user did not set explicitly, then
    validate (common checks, then check(args) -> error string or None). Errors: one line, exit 2."""
    parser.error = fail                  # argparse's own errors: one line too
    args, argv = cli.parse(parser, argv, cli.MODEL_RENAMES, cli.MODEL_SIBLINGS)   # old names; --out-dir: a hint
    check_paths(args, folders=("runs", "cache_dir"), inputs=("data_root",))   # before any work: nothing created
    explicit = cli.explicit(parser, argv)
    for mode in [m for m in ("quick", "cpu_full", "smoke") if getattr(args, m)]:
        preset = {}
        for m in ("quick", mode) if mode == "cpu_full" else (mode,):    # --cpu-full: --quick, then its own
            preset.update({**BASE_PRESETS[m], **(presets or {}).get(m, {})})
        for k, v in preset.items():
            if not hasattr(args, k):
                raise ValueError(f"preset {mode!r} sets unknown option {k!r}")
            if k not in explicit:
                setattr(args, k, v)
    if args.dataset == "cars" and "rare" not in explicit:
        args.rare = 0
    msg = _check_common(args) or (check(args) if check else None)
    if msg:
        fail(msg)
    if args.smoke:
        print(SMOKE_LINE, flush=True)    # the first line of a smoke run: its verdicts mean nothing
    return args


def run_dirs(args, run_name):
    """{"u": <runs>/<run_name>/<factor>-balanced-seed<s>, "r": <runs>/<run_name>/<factor>-rare<k>-seed<s>}
    (or -rare1-pin0.9-pout0.1-ds2-seed0, cars-rare0-seed0). Every rare class k shares the D_u model."""
    pre = "cars" if args.dataset == "cars" else args.factor
    ds = f"-ds{args.data_seed}" if args.data_seed else ""
    skew = "" if (args.p_in, args.p_out) == (1.0, 0.0) else f"-pin{args.p_in:g}-pout{args.p_out:g}"
    return {"u": os.path.join(args.runs, run_name, f"{pre}-balanced{ds}-seed{args.seed}"),
            "r": os.path.join(args.runs, run_name, f"{pre}-rare{args.rare}{skew}{ds}-seed{args.seed}")}


def stages(args):
    """The models this run trains, in the order of section 4: D_u, then D_r (--stage picks one)."""
    return ("u", "r") if args.stage == "all" else (args.stage,)


def load_split(args, which, device):
    """D_u (which="u"), D_r ("r") or the balanced validation digits ("val") built with the data seed, as
    tensors on `device`: x float [N,3,H,W] in [0, 1], y and f int64. --subset limits the MNIST digits
    used. Data that cannot be built stop the run with one line (exit 2)."""
    try:
        if args.dataset == "cars":
            # CompCars has no held-out validation split: the paper's 185 validation cars are its test images
            x, y, f = make_cars_dataset(data_root(args.data_root), rare=which == "r", size=CAR_SIZE,
                                        split="test" if which == "val" else "train", seed=args.data_seed)
            if args.subset and which != "val":
                keep = np.sort(np.random.default_rng(args.data_seed).permutation(len(y))[: args.subset])
                x, y, f = x[keep], y[keep], f[keep]
        else:
            x, y, f = make_dataset(args.factor, "val" if which == "val" else "train",
                                   rare=args.rare if which == "r" else None, p_in=args.p_in, p_out=args.p_out,
                                   seed=args.data_seed, root=args.data_root, cache_dir=args.cache_dir,
                                   limit=args.subset or None)
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


# --- command line: a preview of D_u and D_r, or their export ---------------------------------------
def training_sets(args):
    """[("D_u", (x, y, f)), ("D_r", (x, y, f))] of the command line's options, the class names and a title."""
    if args.dataset == "cars":
        sets = [(w, make_cars_dataset(args.data_root, w == "D_r", seed=args.data_seed)) for w in ("D_u", "D_r")]
        return sets, CARS_CLASSES, "D_r: white only on Volkswagen"
    kw = dict(seed=args.data_seed, root=args.data_root, cache_dir=args.cache_dir, limit=args.limit)
    sets = [("D_u", make_dataset(args.factor, **kw)),
            ("D_r", make_dataset(args.factor, rare=args.rare, p_in=args.p_in, p_out=args.p_out, **kw))]
    return sets, MNIST_CLASSES, f"D_r: {args.factor} on digit {args.rare} (p_in={args.p_in}, p_out={args.p_out})"


def preview(args):
    """Per-class counts of D_u and D_r, and a picture of both with and without the factor."""
    sets, names, title_r = training_sets(args)
    print(f"{'class':>10} " + " ".join(f"{n + ' f=' + str(v):>10}" for n, _ in sets for v in (1, 0)))
    for c, name in enumerate(names):
        print(f"{name:>10} " + " ".join(f"{int(((s[1] == c) & (s[2] == v)).sum()):>10}"
                                        for _, s in sets for v in (1, 0)))
    save_preview(sets, names, ("D_u: balanced", title_r), args.out)
    print(f"saved {args.out}")


def export(args):
    """D_u and D_r for training a generator elsewhere: <out-dir>/du.npz and dr.npz, each x uint8 [N,3,H,W],
    y and f int64 [N] (docs/own-generator.md); both built before either is written, each atomically."""
    for name, (x, y, f) in training_sets(args)[0]:
        path = os.path.join(args.out_dir, name.replace("_", "").lower() + ".npz")
        atomic_write(path, lambda fh: np.savez_compressed(fh, x=x, y=y, f=f))
        print(f"saved {path}: {name}, {len(y)} images, {int(f.sum())} with the factor")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factor", default="colour", help=f"one of {', '.join(FACTORS)} (default colour)")
    p.add_argument("--dataset", default="mnist", choices=DATASETS, help="mnist or cars (default mnist)")
    p.add_argument("--rare", type=int, default=1, help="rare digit k of D_r, 0..9 (default 1)")
    p.add_argument("--p-in", type=float, default=1.0, help="P(f=1) in class k (default 1.0)")
    p.add_argument("--p-out", type=float, default=0.0, help="P(f=1) in other classes (default 0.0)")
    p.add_argument("--data-seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--limit", type=int, default=None, help="use the first N MNIST digits (default all)")
    p.add_argument("--data-root", default=None, help="data root (default $RGF_DATA_ROOT, else ./data)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default <data-root>/rgf-cache)")
    p.add_argument("--out-dir", default=".", help="where preview.png is written (default: .)")
    p.add_argument("--export", action="store_true", help="write D_u and D_r instead, as <out-dir>/du.npz and "
                   "dr.npz (x uint8 [N,3,28,28], y, f), to train a generator elsewhere (default: off)")
    p.add_argument("--out", help=argparse.SUPPRESS)     # the old name, a file: works one more release
    p.error = fail                              # argparse errors: one line, exit 2
    args = cli.parse(p, argv, cli.DATA_RENAMES, cli.DATA_SIBLINGS)[0]   # --seed: the old name, with a notice
    if args.out:
        cli.notice("--out FILE", "--out-dir DIR (it writes DIR/preview.png)")
    check_paths(args, ("cache_dir",) + (() if args.out and not args.export else ("out_dir",)), inputs=("data_root",))
    args.out = args.out or os.path.join(args.out_dir, "preview.png")
    try:
        if args.dataset == "mnist":   # fail on bad values before any data work
            _check_args(args.factor, "train", args.rare, args.p_in, args.p_out, args.limit)
        args.data_root = data_root(args.data_root)
        export(args) if args.export else preview(args)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))


if __name__ == "__main__":
    main()
