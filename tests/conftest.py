"""Shared pytest fixtures.

mnist_root        the data root that the smoke tests of the model scripts use: always the committed
                  fixture (below), so that the suite takes the same few minutes with or without the
                  real data. Checks that need the real MNIST take `real_mnist_root`.
small_mnist_root  always the fixture: tests/data/mnist-small.npz, 3,000 train + 1,000 test real MNIST
                  digits (the first of each split), written out as idx files so that data.load_mnist
                  still goes through torchvision.
real_mnist_root   the real MNIST root, or the test is skipped with the reason.
cache_dir         one writable cache folder for the whole session (renderings are reused across tests).
one_thread        one torch thread for the test: tiny tensors on a busy 2-core machine spin threads
                  (30x slower than one thread there); modules use it with pytest.mark.usefixtures.
"""
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mnist-small.npz")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _write_idx(path, array):
    """IDX format: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian int32 dims, raw bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as fh:
        fh.write(bytes([0, 0, 0x08, array.ndim]))
        fh.write(np.asarray(array.shape, dtype=">i4").tobytes())
        fh.write(array.tobytes())


def write_small_mnist(root):
    """Materialise the committed fixture as <root>/MNIST/raw/*-ubyte; returns root."""
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    with np.load(FIXTURE) as z:
        for split, prefix in (("train", "train"), ("test", "t10k")):
            _write_idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), z[f"{split}_images"])
            _write_idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), z[f"{split}_labels"])
    return str(root)


def real_mnist_dir():
    """$RGF_DATA_ROOT when it holds the four MNIST files, else None."""
    root = os.environ.get("RGF_DATA_ROOT")
    if root and all(os.path.exists(os.path.join(root, "MNIST", "raw", f)) for f in MNIST_FILES):
        return root
    return None


@pytest.fixture(scope="session")
def small_mnist_root(tmp_path_factory):
    return write_small_mnist(tmp_path_factory.mktemp("mnist-small"))


@pytest.fixture(scope="session")
def mnist_root(small_mnist_root):
    return small_mnist_root


@pytest.fixture(scope="session")
def real_mnist_root():
    root = real_mnist_dir()
    if root is None:
        pytest.skip("real MNIST not available: set RGF_DATA_ROOT to a folder holding MNIST/raw/*-ubyte")
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("rgf-cache"))


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
