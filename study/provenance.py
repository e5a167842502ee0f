"""Provenance of a result: the code's git commit, the package versions and the machine, and the run's
output paths relative to its folder, so that a result.json names no path of the machine it ran on.

ztest.evaluate and the audit add these fields to every new result.json; the tables, the comparison with
the paper and the figures never read them, so that a result renders the same wherever it was made.
Older result files, without them or with absolute paths, are read as before. Imports nothing from the
project.
"""
import os
import platform
import subprocess
from importlib import metadata

PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-image", "pillow", "matplotlib")
OUT_KEYS = ("out", "runs", "out_dir")          # the options of a run that name where it writes
CODE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*argv, folder=CODE):
    """stdout of a git command in `folder`, or None when git is missing or fails (not a checkout)."""
    try:
        out = subprocess.run(["git", "--no-optional-locks", "-C", folder, *argv], capture_output=True,
                             text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def code_version(folder=CODE):
    """{"commit": the checkout's HEAD, "dirty": whether tracked files differ from it}; both None when
    the code is not in a git checkout or git is not installed (never an error)."""
    sha = _git("rev-parse", "--verify", "HEAD", folder=folder)
    if not sha:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no", folder=folder)
    return {"commit": sha.strip(), "dirty": None if status is None else bool(status.strip())}


def versions(packages=PACKAGES):
    """The installed version of each package, None where it is not installed."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model():
    """The CPU's model name: /proc/cpuinfo's "model name" (Linux), else platform's, else None."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def gpu_model(device):
    """The GPU's name when `device` is a CUDA device, else None."""
    if str(device).startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(torch.device(device))
    return None


def record(device="cpu"):
    """The provenance of a result made now on `device`: the code's commit and dirty flag, Python and
    the package versions, the CPU model and the GPU's name (None on the CPU)."""
    return {**code_version(), "python": platform.python_version(), "versions": versions(),
            "cpu": cpu_model(), "gpu": gpu_model(device), "platform": platform.platform()}


def relative(path, folder):
    """`path` relative to `folder` (both taken from the working directory), or unchanged when it is not
    a path there (None, or another drive)."""
    if not isinstance(path, (str, os.PathLike)):
        return path
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    except ValueError:
        return os.fspath(path)


def run_fields(dirs, config, device):
    """The fields of a model run's result.json that describe where and how it ran, written in the D_r
    folder dirs["r"]: "dirs" (the D_u and D_r folders) and the output options of "config" relative to
    that folder, the torch version (kept, as older results have it) and "provenance" (record)."""
    import torch
    folder = dirs["r"]
    config = {k: relative(v, folder) if k in OUT_KEYS else v for k, v in config.items()}
    return {"dirs": {w: relative(p, folder) for w, p in dirs.items()}, "config": config,
            "torch": torch.__version__, "provenance": record(device)}
