"""Bad input and renamed options (issue 27).

Each bad input of the issue gets one line naming the value and what is accepted, exit 2, no traceback,
and leaves nothing behind. Each concept has one name across data.py, the model scripts, oracles.py,
ztest.py and run_all.sh (study/cli.py lists them); an old name still works for one release, with a
one-line notice on stderr.
"""
import fcntl
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import data
import ddpm
import gan
import oracles
import vae
import ztest
from study import cli
from study import runs as study_runs

ROOT = Path(__file__).resolve().parent.parent
QUICK = str(ROOT / "results" / "quick")


def run(*argv, cwd=ROOT, **kw):
    return subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, **kw)


def one_line(r, *words):
    """Exit 2, one line on stderr holding every word, no traceback, nothing on stdout."""
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(err) == 1 and "Traceback" not in r.stderr and all(w in err[0] for w in words), r.stderr
    assert r.stdout == "", r.stdout


def files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*"))


# --------------------------------------------------------------------------- the seven bad inputs
def test_paper_that_is_not_the_cells_table(tmp_path):
    r = run("ztest.py", QUICK, "--paper", "README.md", "--out-dir", tmp_path / "out")
    one_line(r, "--paper README.md", "accepted", "paper-cells.csv")
    assert not (tmp_path / "out").exists()


def test_missing_paper_is_caught_before_any_table(tmp_path):
    r = run("ztest.py", QUICK, "--paper", tmp_path / "missing.csv", "--out-dir", tmp_path / "out")
    one_line(r, f"--paper {tmp_path / 'missing.csv'}", "No such file", "accepted")    # and no table printed
    assert not (tmp_path / "out").exists()


def test_figures_with_a_missing_runs_folder(tmp_path):
    r = run("ztest.py", QUICK, "--figures", tmp_path / "fig", "--runs", tmp_path / "nonexistent")
    one_line(r, f"--runs {tmp_path / 'nonexistent'}", "no such folder", "accepted")
    assert not (tmp_path / "fig").exists()


def test_audit_with_a_garbage_samples_file(tmp_path):
    (tmp_path / "garbage.npz").write_text("garbage\n")
    np.savez(tmp_path / "r.npz", x=np.zeros((5, 3, 28, 28), np.uint8))
    r = run("ztest.py", "--u", tmp_path / "garbage.npz", "--r", tmp_path / "r.npz", "--smoke",
            "--save", tmp_path / "audit.json", "--cache-dir", tmp_path / "cache")
    one_line(r, "garbage.npz", "accepted: an .npz", "uint8 [N,3,28,28]")
    assert "pickled" not in r.stderr and files(tmp_path) == ["garbage.npz", "r.npz"]


def test_cars_oracles_without_compcars(tmp_path):
    r = run("oracles.py", "--dataset", "cars", "--data-root", tmp_path / "data", "--cache-dir", tmp_path / "cache")
    one_line(r, "CompCars not found", "expects sv_data/")          # no "training the cars ... oracles" first
    assert files(tmp_path) == []
    with pytest.raises(FileNotFoundError):         # the library route too: no lock, no cache folder left
        oracles.load_oracles("colour", "cars", root=str(tmp_path), cache_dir=str(tmp_path / "cache"), device="cpu")
    assert files(tmp_path) == []


def test_a_failed_run_leaves_no_lock_and_no_folder(tmp_path, monkeypatch, capsys):
    from torchvision.datasets import MNIST
    monkeypatch.setattr(MNIST, "mirrors", [])       # offline: the data cannot be fetched, inside the lock
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        vae.main(["--smoke", "--device", "cpu", "--data-root", str(tmp_path / "empty"),
                  "--cache-dir", str(tmp_path / "cache"), "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "MNIST not found" in err[0]
    assert not (tmp_path / "runs").exists() and files(tmp_path / "empty") == []


def test_run_all_without_the_project_environment(tmp_path):
    bare = tmp_path / "bare-python"                 # the interpreter without its site-packages: no torch
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    r = subprocess.run(["bash", "run_all.sh", "--python", str(bare), "--runs", str(tmp_path / "runs"),
                        "--out-dir", str(tmp_path / "results")], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    one_line(r, str(bare), "cannot run the scripts", "No module named", ".venv/bin/python")
    assert "CompCars" not in r.stderr and files(tmp_path) == ["bare-python"]


# --------------------------------------------------------------------------- the lock file
def test_the_lock_file_goes_and_a_waiter_locks_the_new_one(tmp_path, capsys):
    path = tmp_path / "cell" / ".lock"
    got, release = threading.Event(), threading.Event()

    def waiter():
        with data.file_lock(path):
            got.set()
            # the waiter holds the lock on the file now at `path`, not on the one the first holder unlinked
            with open(path) as fh, pytest.raises(BlockingIOError):
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            release.wait(30)

    with data.file_lock(path):
        (tmp_path / "cell" / "ckpt.pt").write_text("")    # the run wrote something: the folder stays
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.3)
        assert not got.is_set() and path.exists()
    assert got.wait(30) and path.exists()
    release.set()
    t.join(30)
    assert files(tmp_path) == ["cell", "cell/ckpt.pt"]
    assert "waiting for" in capsys.readouterr().out
    with pytest.raises(ValueError), data.file_lock(tmp_path / "a" / "b" / ".lock"):
        raise ValueError("the run failed")
    assert files(tmp_path) == ["cell", "cell/ckpt.pt"]         # the folders the lock made, gone again


# --------------------------------------------------------------------------- one name per concept
def model_parse(argv):
    return data.parse_args(vae.build_parser(), ["--device", "cpu"] + argv)


def test_old_names_still_work_with_a_notice(capsys, monkeypatch, tmp_path):
    new = model_parse(["--runs", "R", "--stage", "all"])
    assert capsys.readouterr().err == ""
    for argv in (["--out", "R", "--stage", "both"], ["--out=R", "--stage=both"]):
        old = model_parse(argv)
        assert vars(old) == vars(new) and old.runs == "R" and old.stage == "all"
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2 and err[0].endswith(": --out is now --runs; the old name goes in the next release")
        assert err[1].endswith(": --stage both is now --stage all; the old name goes in the next release")
    assert cli.renamed(["--seed", "1", "--", "--out"], cli.MODEL_RENAMES) == ["--seed", "1", "--", "--out"]

    seen = {}
    monkeypatch.setattr(data, "preview", lambda args: seen.update(vars(args)))
    data.main(["--seed", "3", "--out", str(tmp_path / "p.png")])     # data.py: the data seed, a file
    err = capsys.readouterr().err.splitlines()
    assert seen["data_seed"] == 3 and seen["out"] == str(tmp_path / "p.png") and len(err) == 2
    assert "--seed is now --data-seed" in err[0] and "--out FILE is now --out-dir DIR" in err[1]
    data.main(["--data-seed", "3", "--out-dir", str(tmp_path)])
    assert seen["out"] == os.path.join(str(tmp_path), "preview.png") and capsys.readouterr().err == ""

    assert oracles.build_parser().parse_args(cli.renamed(["--recipe", "paper"], cli.ORACLE_RENAMES)).oracles == "paper"
    assert "--recipe is now --oracles" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        oracles.main(["--recipe", "bogus"])
    err = capsys.readouterr().err.splitlines()
    assert "--recipe is now --oracles" in err[0] and "--oracles 'bogus' not known" in err[1]


def test_run_all_old_names_still_work_with_a_notice(tmp_path):
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/sh\n[ "$1" = -c ]\n')
    fake.chmod(0o755)
    r = subprocess.run(["bash", "run_all.sh", "--list", "--python", str(fake), "--models", "vae", "--factors",
                        "colour", "--rares", "1", "--out", str(tmp_path / "R"), "--results", str(tmp_path / "T")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["run_all.sh: --out is now --runs; the old name goes in the next release",
                                     "run_all.sh: --results is now --out-dir; the old name goes in the next release"]
    assert r.stdout.splitlines()[1].endswith(f"--stage u --runs {tmp_path / 'R'}")


def test_the_runs_folder_is_no_part_of_a_models_identity():
    a = model_parse(["--runs", "somewhere"])
    ident = study_runs.identity(a, "r")
    assert "runs" not in ident and "out" not in ident and "stage" not in ident


HELP = {   # concept: (the one name, old names that must not show)
    "data seed": ("--data-seed", []), "training seed": ("--seed", []), "oracle recipe": ("--oracles", [r"--recipe\b"]),
    "stages": (r"--stage \{all,u,r\}", [r"\bboth\b"]), "runs folder": ("--runs", [r"--out\b(?!-)", r"--results\b"]),
    "output folder": ("--out-dir", [r"--out\b(?!-)", r"--results\b"]),
}
HAS = {   # which concepts each command line has
    "data.py": ("data seed", "output folder"), "oracles.py": ("data seed", "oracle recipe"),
    "ztest.py": ("data seed", "oracle recipe", "runs folder", "output folder"),
    **{m: ("data seed", "training seed", "oracle recipe", "stages", "runs folder") for m in ("vae.py", "gan.py", "ddpm.py")},
    "run_all.sh": ("data seed", "oracle recipe", "runs folder", "output folder"),
}


def _help(name, capsys):
    if name == "run_all.sh":
        return subprocess.run(["bash", "run_all.sh", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    if name == "data.py":
        with pytest.raises(SystemExit):
            data.main(["--help"])
        return capsys.readouterr().out
    mod = {"vae.py": vae, "gan.py": gan, "ddpm.py": ddpm, "oracles.py": oracles, "ztest.py": ztest}[name]
    return mod.build_parser().format_help()


@pytest.mark.parametrize("name", sorted(HAS))
def test_help_shows_each_concept_under_one_name(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    text = _help(name, capsys)
    for concept in HAS[name]:
        one, old = HELP[concept]
        assert re.search(one, text), f"{name} --help lacks {one} ({concept})"
        for o in old:
            assert not re.search(o, text), f"{name} --help still shows {o!r} ({concept})"
    if name == "data.py":                      # the data seed is --data-seed there, never --seed
        assert not re.search(r"--seed\b", text)
    if name == "run_all.sh":
        assert re.search(r"--seeds LIST", text) and re.search(r"--stage S +all, u", text)
