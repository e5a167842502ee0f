"""Your own generator: data.py --export writes D_u and D_r (x, y, f), atomically; the README's loop (the
export, a stand-in generator, the audit with the smoke oracles) runs as written, on the MNIST fixture;
ztest.audit takes arrays as well as files, with the same result (docs/own-generator.md).

    python -m pytest -q tests/test_own_generator.py
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import data
import ztest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


def readme_loop():
    """The bash block of the README's section "Your own generator", as written."""
    with open(os.path.join(REPO, "README.md")) as fh:
        text = fh.read()
    section = text[text.index("## Your own generator"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_export_writes_du_and_dr_with_labels_and_factors(mnist_root, cache_dir, tmp_path):
    out = tmp_path / "gen"
    data.main(["--factor", "colour", "--rare", "1", "--export", "--out-dir", str(out), "--data-root", mnist_root,
               "--cache-dir", cache_dir])
    assert sorted(os.listdir(out)) == ["dr.npz", "du.npz"]          # and no temporary file left behind
    for name, rare in (("du", None), ("dr", 1)):
        with np.load(out / f"{name}.npz") as z:
            assert sorted(z.files) == ["f", "x", "y"]
            x, y, f = z["x"], z["y"], z["f"]
        assert x.dtype == np.uint8 and x.shape == (len(y), 3, 28, 28) and y.dtype == f.dtype == np.int64
        want = data.make_dataset("colour", rare=rare, root=mnist_root, cache_dir=cache_dir)
        assert all(np.array_equal(a, b) for a, b in zip((x, y, f), want)), f"{name}.npz is not D_{name[1]}"
    assert set(np.unique(y[f == 1])) == {1} and f[y == 1].all()       # D_r: the factor on the 1s only


def test_export_refuses_bad_input_before_writing(mnist_root, cache_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        data.main(["--rare", "12", "--export", "--out-dir", str(tmp_path / "gen"), "--data-root", mnist_root,
                   "--cache-dir", cache_dir])
    assert e.value.code == 2 and "12" in capsys.readouterr().err and not (tmp_path / "gen").exists()


def test_the_readme_loop_runs_as_written(mnist_root, cache_dir, tmp_path):
    """The README's commands, each `python` this interpreter and each script the repository's, in a
    fresh folder, with RGF_DATA_ROOT set to the fixture."""
    script = re.sub(r"^python (data\.py|ztest\.py|-c)", lambda m: f"{sys.executable} " + (
        m.group(1) if m.group(1) == "-c" else os.path.join(REPO, m.group(1))), readme_loop(), flags=re.M)
    assert script.count(sys.executable) == 3, "the README's loop is no longer export, stand-in, audit"
    env = {**os.environ, "RGF_DATA_ROOT": mnist_root, "RGF_CACHE_DIR": cache_dir, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Resampler, colour, rare class 1, seed 0" in r.stdout and "sample quality:" in r.stdout
    for w in "ur":
        with np.load(tmp_path / "gen" / f"{w}.npz") as z:
            assert z["x"].dtype == np.uint8 and z["x"].shape == (2000, 3, 28, 28)


def test_audit_takes_arrays_as_well_as_files(mnist_root, cache_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    x_u, _, _ = data.make_dataset("colour", root=mnist_root, cache_dir=cache_dir)
    x_r, _, _ = data.make_dataset("colour", rare=1, root=mnist_root, cache_dir=cache_dir)
    u, r = x_u[rng.choice(len(x_u), 300)], x_r[rng.choice(len(x_r), 300)]
    np.savez(tmp_path / "u.npz", x=u, y=np.zeros(300))                  # other keys are ignored
    np.save(tmp_path / "r.npy", r)
    kw = dict(factor="colour", rare=1, root=mnist_root, cache_dir=cache_dir, device="cpu", smoke=True, model="Mine")
    by_file = ztest.audit(str(tmp_path / "u.npz"), str(tmp_path / "r.npy"), **kw)
    by_array = ztest.audit(u, torch.from_numpy(r), **kw)
    assert by_array["counts"] == by_file["counts"] and by_array["readable"] == by_file["readable"]
    assert by_array["dirs"] == {"u": "array", "r": "array"} and by_file["dirs"]["r"].endswith("r.npy")
    assert by_array["provenance"]["versions"]["numpy"] == np.__version__
    data.save_json(by_array, tmp_path / "mine.json")                   # renders like ours
    capsys.readouterr()
    ztest.main([str(tmp_path / "mine.json"), "--cell"])
    assert capsys.readouterr().out.startswith("Mine, colour, rare class 1, seed 0\n")
    assert json.loads((tmp_path / "mine.json").read_text())["model"] == "Mine"
    with pytest.raises(ValueError, match=r"the samples array: samples are float32 \(5, 3, 28, 28\); accepted: uint8"):
        ztest.audit(np.zeros((5, 3, 28, 28), np.float32), r, **kw)
