"""The audit of any generator: its uint8 samples from the models trained on D_u and on D_r, given as
files or arrays, become a result that renders like ours (the format: docs/own-generator.md).

ztest.py labels the samples with the oracles and computes the z-table; this module reads the files and
writes the result's record. Run it through ztest.py:

    python ztest.py --u U.npz --r R.npz --factor colour --rare 1 --model MyGAN --save audit.json
"""
import os
import zipfile
from datetime import datetime, timezone

import numpy as np

import data
from study import provenance


def shape(dataset):
    """The sample shape of a dataset: [3, 28, 28] for MNIST, [3, 64, 64] for cars."""
    return (3, data.CAR_SIZE, data.CAR_SIZE) if dataset == "cars" else (3, 28, 28)


def load_samples(path, shape):
    """uint8 samples [N, *shape] from an .npz (key x or samples, or its only array) or .npy file, or
    from an array (numpy, or anything np.asarray takes: a CPU torch tensor)."""
    if not isinstance(path, (str, os.PathLike)):
        try:
            return _checked(np.asarray(path), "the samples array", shape)
        except (TypeError, RuntimeError) as e:     # e.g. a CUDA tensor: .cpu() it first
            raise ValueError(f"cannot read the samples array: {e}") from None
    accepted = f"accepted: an .npz (np.savez) with x, uint8 [N,{','.join(map(str, shape))}], or such an .npy"
    try:
        z = np.load(path)
        if isinstance(z, np.lib.npyio.NpzFile):
            keys = [k for k in ("x", "samples") if k in z.files] or z.files
            if len(keys) != 1 and keys[0] not in ("x", "samples"):
                raise KeyError(keys)
            z = z[keys[0]]
    except OSError as e:
        raise ValueError(f"cannot read samples {path}: {e.strerror or e}; {accepted}") from None
    except KeyError:
        raise ValueError(f"{path}: which array? keys {z.files}; accepted: x, samples, or a single array") from None
    except (ValueError, EOFError, IndexError, zipfile.BadZipFile):     # not numpy's, or pickled objects
        raise ValueError(f"{path} is not a samples file; {accepted}") from None
    return _checked(z, path, shape)


def _checked(z, name, shape):
    if z.dtype != np.uint8 or z.ndim != 4 or tuple(z.shape[1:]) != tuple(shape) or not len(z):
        raise ValueError(f"{name}: samples are {z.dtype} {tuple(z.shape)}; accepted: uint8 [N,{','.join(map(str, shape))}]")
    return z


def source(s):
    """How a result names where its samples came from: the file's path, or "array"."""
    return os.fspath(s) if isinstance(s, (str, os.PathLike)) else "array"


def record(u, r, n_r, labelled, orc, factor, rare, dataset, model, data_seed, smoke, min_n, recipe, device):
    """The audit's result (without its rows): labelled = (counts, readable, quality) of ztest.label_samples;
    u, r: the sample files or arrays; n_r: the number of D_r samples."""
    counts, readable, q, morph = labelled
    classes = data.class_names(dataset)
    return {"format": "rgf-result/1", "model": model, "run_name": "audit", "dataset": dataset, "factor": factor,
            "rare": rare, "p_in": 1.0, "p_out": 0.0, "seed": 0, "data_seed": data_seed, "samples": n_r,
            "classes": list(classes), "counts": counts, "readable": readable, "min_n": min_n,
            "test": "one-sample", "correction": "none", "oracle_acc": orc["acc"], "oracle_smoke": smoke,
            "oracle_recipe": recipe,
            "quality": q, **({"morphometric": morph} if morph else {}), "dirs": {"u": source(u), "r": source(r)}, "device": str(device),
            "provenance": provenance.record(device),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
