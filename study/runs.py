"""Run plumbing: one-line errors, atomic files, locks, device and seeds, the checkpoint of a training run.

The model scripts reach this module through data.py (data.Checkpoint, data.fail, ...), never directly.
It imports nothing from the project, so every other module can use it.

A training loop uses one object (Morpho-MNIST's experiments keep theirs behind two calls, too):

    ck = data.Checkpoint(cell, args, which, device, started)   # resume, or refuse other settings
    if (x := ck.finished_samples()) is not None: ...           # model and samples already there
    ck.restore(parts, gen)                                       # weights, optimisers, RNG states
    for epoch in range(ck.epoch, args.epochs):
        ck.save(parts, gen, {"epoch": epoch + 1, **losses})      # NaN stop, ckpt.pt, history.csv
    samples = ck.save_samples(x)                                 # samples.npz and samples.png
"""
import contextlib
import copy
import csv
import fcntl
import io
import json
import math
import os
import random
import re
import sys
import tempfile

import numpy as np
import torch
from tqdm import tqdm

# Options that never change a trained model; every other option is part of a checkpoint's identity.
# "out" is the runs folder's name before it was --runs: checkpoints of that release never stored it.
NOT_TRAINING = ("samples", "force", "stage", "device", "runs", "out", "data_root", "cache_dir", "quick", "cpu_full",
                "smoke", "min_n", "oracles")


# --- errors and files -----------------------------------------------------------------------------
def fail(msg, code=2):
    """Stop with one line on stderr, '<script>: error: <msg>', and an exit code (2: bad input, 1: a run
    that failed); never a traceback."""
    print(f"{os.path.basename(sys.argv[0])}: error: {msg}", file=sys.stderr)
    sys.exit(code)


SMOKE_LINE = "SMOKE RUN: seconds-long models and smoke oracles; its verdicts mean nothing."
OUT_ACCEPTED = "accepted: a folder you can write to, or a new one under such a folder"


def _read_only(folder):
    """True when `folder` (an existing folder) cannot take new files. A folder whose permission bits
    allow no write counts as read-only even for root (as data.py's data root does)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return True
    return not os.stat(folder).st_mode & 0o222


def _nearest(path):
    """The deepest part of `path` that exists (the path itself when it does)."""
    probe = os.path.normpath(path)
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent in ("", probe):
            return parent or "."
        probe = parent
    return probe


def output_problem(option, path, kind="folder"):
    """Why `path`, given as `option`, cannot be written, as one line, or None when it can: an existing
    file where a folder is expected (kind="folder") or a folder where a file is (kind="file"), a path
    under a file, or a folder that cannot take new files. It creates and writes nothing, so a command
    line can check every output before any work."""
    if path is None or path == "":
        return None if path is None else f"{option} is empty; {OUT_ACCEPTED}"
    path = os.fspath(path)
    accepted = OUT_ACCEPTED if kind == "folder" else \
        "accepted: a file path in a folder you can write to (the folder is created when new)"
    if kind == "folder" and os.path.exists(path) and not os.path.isdir(path):
        return f"{option} {path} is a file, not a folder; {accepted}"
    if kind == "file" and os.path.isdir(path):
        return f"{option} {path} is a folder, not a file; {accepted}"
    base = _nearest(path if kind == "folder" else os.path.dirname(path) or ".")
    if not os.path.isdir(base):
        return f"{option} {path} lies under {base}, which is not a folder; {accepted}"
    if _read_only(base):
        return f"{option} {path}: the folder {base} is not writable; {accepted}"
    return None


def check_outputs(folders=(), files=()):
    """Every output of a command line checked right after parsing, before any work: (option, path)
    pairs of the folders it writes into and of the files it writes (None: not asked for). The first
    problem stops it with one line and exit 2 (output_problem); nothing is created."""
    for kind, pairs in (("folder", folders), ("file", files)):
        for option, path in pairs:
            msg = output_problem(option, path, kind)
            if msg:
                fail(msg)


INPUTS = {"data_root": "a folder holding MNIST/raw/ (or one to download it into)"}   # input folders: accepted


def check_paths(args, folders=(), files=(), inputs=()):
    """A command line's paths, checked right after parsing and before any work (one line, exit 2, nothing
    created): the attributes of args named in `folders` (output folders), `files` (output files) and
    `inputs` (input folders, INPUTS); those it lacks or that are None are skipped. The option is named
    after the attribute: out_dir is --out-dir."""
    opt = lambda k: "--" + k.replace("_", "-")
    for k in inputs:
        msg = input_folder_problem(opt(k), getattr(args, k, None), INPUTS.get(k, "a folder"))
        if msg:
            fail(msg)
    check_outputs([(opt(k), getattr(args, k, None)) for k in folders], [(opt(k), getattr(args, k, None)) for k in files])


def input_folder_problem(option, path, accepted):
    """Why `path`, an input folder given as `option`, cannot be one, as one line, or None: it is a file,
    or it lies under one. A folder that does not exist yet is the caller's to judge."""
    if path is None:
        return None
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{option} {path} is a file, not a folder; accepted: {accepted}"
    base = _nearest(path)
    if not os.path.isdir(base):
        return f"{option} {path} lies under {base}, which is not a folder; accepted: {accepted}"
    return None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, mode="wb"):
    """Write `path` with write(fh) into a temp file in the same folder, then os.replace: a reader never
    sees a half-written file. The file gets the usual permissions (0666 less the umask), not the 0600 of
    the temp file, so that collaborators on a shared machine can read results."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def json_safe(v):
    """NaN/inf -> null, numpy scalars -> Python, tuples -> lists: standard JSON."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (np.integer, np.bool_)):
        return v.item()
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def save_json(obj, path):
    atomic_write(path, lambda fh: fh.write(json.dumps(json_safe(obj), indent=1, allow_nan=False)), mode="w")


def save_text(text, path):
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def text_grid(head, body):
    """Rows of cells as right-aligned text columns under a header line."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def progress(iterable, desc="", total=None, **kw):
    """A tqdm bar that vanishes when done; in logs (no terminal) it updates every 10 s only."""
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True,
                mininterval=0.1 if sys.stderr.isatty() else 10.0, **kw)


def _new_folders(folder):
    """The folders that os.makedirs(folder) would create, deepest first."""
    new = []
    while folder and not os.path.isdir(folder) and folder != os.path.dirname(folder):
        new.append(folder)
        folder = os.path.dirname(folder)
    return new


def _locked(path):
    """An open file holding an exclusive fcntl lock on `path` as it stands now: a lock taken on a file
    that its holder unlinked (or replaced) on release is dropped and taken again on the new one."""
    said = False
    while True:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fh = open(path, "a")
        except FileNotFoundError:        # its folder went away as the last holder cleaned up: again
            continue
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not said:
                    print(f"waiting for {path}: another run holds it")
                said = True
                fcntl.flock(fh, fcntl.LOCK_EX)
            mine, now = os.fstat(fh.fileno()), os.stat(path)
            if (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino):
                return fh
        except FileNotFoundError:
            pass
        except BaseException:
            fh.close()
            raise
        fh.close()


@contextlib.contextmanager
def file_lock(path):
    """An exclusive fcntl lock on `path`, held until the block ends (released if the process dies). The
    lock file is removed on release, with the folders the lock created when they are left empty (a run
    that failed leaves nothing behind); a waiter then locks the file the next holder creates."""
    path = os.path.abspath(path)
    new = _new_folders(os.path.dirname(path))
    fh = _locked(path)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)              # still locked: no one else can hold this file now
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
        for folder in new:
            try:
                os.rmdir(folder)         # only when empty: what the run wrote stays
            except OSError:
                break


# --- device, seeds and mixed precision -------------------------------------------------------------
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


# --- identities, checkpoints, samples -------------------------------------------------------------
def identity(args, which, eval_keys=()):
    """The options that define a trained model (D_u ignores the rare class and the skew). eval_keys:
    options that change only sampling (a sampler's step count), never the model."""
    skip = set(NOT_TRAINING) | set(eval_keys) | ({"rare", "p_in", "p_out"} if which == "u" else set())
    return {k: v for k, v in sorted(vars(args).items()) if k not in skip}


def sample_key(args, which, eval_keys):
    return json.dumps({**identity(args, which, eval_keys), "samples": args.samples,
                       **{k: getattr(args, k) for k in eval_keys}}, sort_keys=True)


def check_identity(path, saved, ident):
    diff = sorted(k for k in set(saved) | set(ident) if saved.get(k) != ident.get(k))
    if diff:
        was = ", ".join(f"{k}={saved.get(k)!r} (now {ident.get(k)!r})" for k in diff)
        fail(f"{path} was made with other settings: {was}; use --force to redo it or --runs for a "
                  f"separate folder")


def open_checkpoint(cell, args, which, started, eval_keys=()):
    """The checkpoint in `cell` to resume from (a dict), or None to train afresh. One made with other
    settings is refused with one line that names them (exit 2). --force trains afresh, except a D_u
    model that a parallel run, also forced, finished after this run `started` (a time.time())."""
    path = os.path.join(cell, "ckpt.pt")
    if not os.path.exists(path):
        return None
    ck = torch.load(path, map_location="cpu", weights_only=False)   # our own file: it holds RNG states
    if args.force and not (which == "u" and ck["epoch"] >= args.epochs and os.path.getmtime(path) >= started):
        return None
    if "state" not in ck:
        fail(f"{path} was written by an older version of this script; use --force to retrain")
    check_identity(path, ck["identity"], identity(args, which, eval_keys))
    return ck


class EMA:
    """Exponential moving average of a network's weights, used for sampling: the DDPM's (Ho et al.,
    Appendix B) and the GAN generator's (Yazici et al. 2019). state_dict / load_state_dict let the
    checkpoint keep it beside the network. Buffers (BatchNorm statistics) are not averaged: they belong
    to the weights that made them, so a model with BatchNorm re-estimates them before sampling."""

    def __init__(self, net, decay):
        self.net, self.decay = copy.deepcopy(net).requires_grad_(False).eval(), decay
        self.updates = torch.zeros((), dtype=torch.long)   # steps taken; a CPU scalar: no GPU sync per step

    @torch.no_grad()
    def update(self, net):
        self.updates += 1
        # warm-up (as in TensorFlow's ExponentialMovingAverage): early weights are forgotten quickly.
        d = ((1 + self.updates) / (10 + self.updates)).clamp(max=self.decay).float()
        for e, p in zip(self.net.parameters(), net.parameters()):
            e.lerp_(p, 1 - d)                                    # e <- d e + (1 - d) p

    def state_dict(self):
        return {"net": self.net.state_dict(), "updates": self.updates}

    def load_state_dict(self, state):
        self.net.load_state_dict(state["net"])
        self.updates.copy_(state["updates"])


def _rng_state(gen):
    return {"gen": gen.get_state(), "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None}


def restore(ck, parts, gen, label):
    """Load every named part (modules, optimisers, a GradScaler: anything with load_state_dict) and the
    RNG states from checkpoint `ck`. Returns (epochs done, history, extra); (0, [], None) when ck is None."""
    if ck is None:
        return 0, [], None
    for name, part in parts.items():
        part.load_state_dict(ck["state"][name])
    rng = ck["rng"]
    gen.set_state(rng["gen"])
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    print(f"{label}: resuming after epoch {ck['epoch']}")
    return ck["epoch"], ck["history"], ck.get("extra")


def save_checkpoint(cell, parts, gen, epoch, args, which, history, extra=None, eval_keys=()):
    """After each epoch: ckpt.pt (atomic) with every named part's state_dict, the epoch, the RNG states,
    the settings and the history (and `extra`, anything picklable the script wants back on resume);
    then history.csv, the losses per epoch."""
    ck = {"state": {name: part.state_dict() for name, part in parts.items()}, "epoch": epoch,
          "rng": _rng_state(gen), "config": vars(args), "identity": identity(args, which, eval_keys),
          "history": history, "extra": extra}
    atomic_write(os.path.join(cell, "ckpt.pt"), lambda fh: torch.save(ck, fh))
    save_csv(history, os.path.join(cell, "history.csv"))


def save_csv(rows, path):
    """A list of dicts as CSV (columns in order of first appearance), written atomically."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    save_text(buf.getvalue(), path)


def save_config(cell, which, n_images, device, args):
    save_json({"which": which, "images": n_images, "device": str(device), "torch": torch.__version__,
                    "config": vars(args)}, os.path.join(cell, "config.json"))


def stop_if_not_finite(losses, label, epoch, cell):
    """A NaN or infinite loss ends the run with one line (exit 1); the last good checkpoint stays."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        fail(f"{label} training stopped: non-finite loss in epoch {epoch + 1} ("
                  + ", ".join(f"{k}={v}" for k, v in bad.items()) + f"). The last good checkpoint (epoch "
                  f"{epoch}) is kept in {os.path.join(cell, 'ckpt.pt')}; rerun with --force and a lower --lr "
                  f"or another --seed", code=1)


def log_epoch(label, history, args, device, first):
    """One line per epoch; after the first epoch of a long CPU run, how long the rest will take."""
    row = history[-1]
    print(f"{label} epoch {row['epoch']}/{args.epochs}  " + "  ".join(
        f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"), flush=True)
    left = row["seconds"] * (args.epochs - row["epoch"])
    preset = args.quick or args.smoke or getattr(args, "cpu_full", False)
    if first and device.type == "cpu" and not preset and left > 900:
        print(f"{label}: about {left / 60:.0f} more minutes on this CPU; --quick is the CPU preset")


def cached_samples(cell, args, which, eval_keys=()):
    """The samples saved in `cell` by a run with the same settings (same model, M and sampler), or None."""
    path = os.path.join(cell, "samples.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            if str(z["key"]) == sample_key(args, which, eval_keys):
                return z["x"]
    return None


def save_samples(cell, x, args, which, eval_keys=()):
    """samples.npz (uint8 [M,3,H,W], keyed by the settings) and samples.png, a 10x10 grid of the first 100."""
    x = x.cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:2] != (args.samples, 3):
        fail(f"sampling gave {x.dtype} {x.shape}; expected uint8 ({args.samples}, 3, H, W)",
                  code=1)
    key = np.array(sample_key(args, which, eval_keys))
    atomic_write(os.path.join(cell, "samples.npz"), lambda fh: np.savez_compressed(fh, x=x, key=key))
    save_grid(x, os.path.join(cell, "samples.png"))
    return x


def save_grid(images, path, rows=10):
    """A rows x rows grid PNG of the first rows^2 uint8 images [N,3,H,W] (black where fewer)."""
    from torchvision.utils import save_image
    x = np.asarray(images, dtype=np.uint8)[: rows * rows]
    grid = torch.zeros((rows * rows,) + x.shape[1:])               # black where fewer
    grid[:len(x)] = torch.from_numpy(x) / 255
    atomic_write(path, lambda fh: save_image(grid, fh, format="PNG", nrow=rows, padding=0))


def class_grid(x, y, f, classes, per=4):
    """One row per class: `per` examples with f = 0, then `per` with f = 1 (grey where none); HWC uint8."""
    from torchvision.utils import make_grid
    cells = np.full((classes, 2, per) + x.shape[1:], 40, np.uint8)
    for c in range(classes):
        for v in (0, 1):
            idx = np.flatnonzero((y == c) & (f == v))[:per]
            cells[c, v, :len(idx)] = x[idx]
    g = make_grid(torch.from_numpy(cells.reshape((-1,) + x.shape[1:])), nrow=2 * per, padding=2, pad_value=40)
    return g[:, 2:, 2:].permute(1, 2, 0).numpy()     # the gap after each image, none before the first


def save_preview(sets, names, titles, path):
    """data.py's preview PNG: the class grid of each dataset of sets = [(name, (x, y, f))], side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.6 * len(names) + 1.5))
    for ax, (_, (x, y, f)), title in zip(axes, sets, titles):
        g = class_grid(x, y, f, len(names))
        step = g.shape[0] / len(names)
        ax.imshow(g)
        ax.set_yticks(np.arange(len(names)) * step + step / 2, names)
        ax.set_xticks([g.shape[1] / 4, 3 * g.shape[1] / 4], ["f = 0", "f = 1"])
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    plt.close(fig)


# --- the checkpoint of one training run -----------------------------------------------------------
class Checkpoint:
    """The run folder `cell` of one model (D_u: which="u", D_r: "r"): its resumable state.

    Opening it finds ckpt.pt, refuses one made with other settings (one line that names them, exit 2),
    and honours --force (train afresh, except a D_u model that a parallel forced run finished after
    this run `started`, a time.time()). eval_keys: options that change only sampling, never the model.
    Attributes: epoch (epochs done, 0 when fresh), history (one dict per epoch), extra (what the script
    saved beside the models, None when fresh)."""

    def __init__(self, cell, args, which, device, started, eval_keys=()):
        self.cell, self.args, self.which, self.device, self.eval_keys = cell, args, which, device, eval_keys
        self.label = "D_u" if which == "u" else f"D_r (rare {args.rare})"
        self.ck = open_checkpoint(cell, args, which, started, eval_keys)
        self.epoch = self.ck["epoch"] if self.ck else 0
        self.history = list(self.ck["history"]) if self.ck else []
        self.extra = self.ck.get("extra") if self.ck else None
        self._first = True

    def finished_samples(self):
        """The saved samples when the model is fully trained and they match the settings, else None."""
        if self.epoch < self.args.epochs:
            return None
        x = cached_samples(self.cell, self.args, self.which, self.eval_keys)
        if x is not None:
            print(f"{self.label}: trained model and samples found in {self.cell}")
        return x

    def restore(self, parts, gen):
        """Load every named part (modules, optimisers, a GradScaler, an EMA: anything with
        load_state_dict) and the RNG states; a fresh run leaves them as they are."""
        restore(self.ck, parts, gen, self.label)

    def begin(self, n_images):
        """Training starts (or resumes) on n_images: config.json, and one line saying so."""
        save_config(self.cell, self.which, n_images, self.device, self.args)
        print(f"{self.label}: {n_images} images, epochs {self.epoch + 1}..{self.args.epochs} -> {self.cell}")

    def save(self, parts, gen, row, extra=None):
        """After an epoch: stop on a non-finite number in `row` (exit 1, the last good checkpoint
        stays), append `row` (it holds "epoch") to the history, write ckpt.pt atomically and
        history.csv, and print the epoch's line."""
        stop_if_not_finite(row, self.label, row["epoch"] - 1, self.cell)
        self.history.append(row)
        self.epoch, self.extra = row["epoch"], extra
        save_checkpoint(self.cell, parts, gen, self.epoch, self.args, self.which, self.history, extra,
                        self.eval_keys)
        log_epoch(self.label, self.history, self.args, self.device, first=self._first)
        self._first = False

    def save_samples(self, x):
        """samples.npz (uint8 [M, C, H, W], keyed by the settings) and samples.png; returns x as numpy."""
        return save_samples(self.cell, x, self.args, self.which, self.eval_keys)
