"""Bad input and renamed options (issue 27).

Each bad input of the issue gets one line naming the value and what is accepted, exit 2, no traceback,
and leaves nothing behind. Each concept has one name across data.py, the model scripts, oracles.py,
ztest.py and run_all.sh (study/cli.py lists them); an old name still works for one release, with a
one-line notice on stderr.
"""
import fcntl
import json
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


# --------------------------------------------------------------------------- issue 39: outputs checked first
def main_fails(capsys, main, argv, *words):
    """main(argv) stops with exit 2 and one stderr line holding every word, no traceback, nothing on stdout."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and all(w in err[0] for w in words), cap.err
    assert "Traceback" not in cap.err and cap.out == "", cap.out
    return err[0]


def _presets(argv):
    from study import presets
    code = presets.main(argv)
    if code:
        raise SystemExit(code)


def _morphometry(argv):
    from study import morphometry
    return morphometry.main(argv)


OUTPUTS = {    # the output options of each command line: (main, argv before the bad path, the option)
    "data.py --out-dir": (data.main, ["--factor", "colour", "--rare", "1", "--out-dir"], "--out-dir"),
    "data.py --export --out-dir": (data.main, ["--factor", "colour", "--rare", "1", "--export", "--out-dir"], "--out-dir"),
    "data.py --cache-dir": (data.main, ["--cache-dir"], "--cache-dir"),
    "vae.py --runs": (vae.main, ["--factor", "colour", "--rare", "1", "--smoke", "--runs"], "--runs"),
    "gan.py --runs": (gan.main, ["--smoke", "--runs"], "--runs"),
    "ddpm.py --runs": (ddpm.main, ["--smoke", "--runs"], "--runs"),
    "vae.py --cache-dir": (vae.main, ["--smoke", "--cache-dir"], "--cache-dir"),
    "ztest.py --out-dir": (ztest.main, [QUICK, "--out-dir"], "--out-dir"),
    "ztest.py --figures --cell": (ztest.main, [QUICK, "--cell", "gan/colour-rare1-seed0", "--figures"], "--figures"),
    "ztest.py --figures": (ztest.main, [QUICK, "--figures"], "--figures"),
    "ztest.py --cache-dir": (ztest.main, ["--u", "u.npz", "--r", "r.npz", "--smoke", "--cache-dir"], "--cache-dir"),
    "oracles.py --cache-dir": (oracles.main, ["--smoke", "--cache-dir"], "--cache-dir"),
    "morphometry --cache-dir": (_morphometry, ["--validate", "--n", "20", "--cache-dir"], "--cache-dir"),
}


@pytest.mark.parametrize("name", sorted(OUTPUTS))
@pytest.mark.parametrize("how", ["a file", "under a file", "read-only"])
def test_a_bad_output_folder_is_one_line_before_any_work(name, how, tmp_path, capsys, monkeypatch):
    """An existing file where a folder is expected, a path under a file, a folder that cannot be written:
    one line naming the option and the path, exit 2, and nothing created (no folder, no table first)."""
    main, argv, option = OUTPUTS[name]
    (tmp_path / "afile").write_text("x\n")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    monkeypatch.chdir(tmp_path)                     # the README's "--out-dir README.md": a file given by name
    path, words = {"a file": ("afile", ["is a file, not a folder"]),
                   "under a file": (os.path.join("afile", "sub"), ["lies under afile", "not a folder"]),
                   "read-only": (os.path.join("ro", "new"), ["ro is not writable"])}[how]
    try:
        main_fails(capsys, main, argv + [path], f"{option} {path}", *words, "accepted: a folder you can write to")
        assert files(tmp_path) == ["afile", "ro"] and (tmp_path / "afile").read_text() == "x\n"
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_the_issues_commands_from_the_command_line(tmp_path):
    """The issue's two data.py commands as typed (the file: README.md): one line, exit 2, at once."""
    for extra in ([], ["--export"]):
        t0 = time.time()
        r = run("data.py", "--factor", "colour", "--rare", "1", "--out-dir", "README.md", *extra)
        one_line(r, "--out-dir README.md is a file, not a folder", "accepted")
        assert time.time() - t0 < 60                  # no data built first (it took 4 s of work before)
    assert (ROOT / "README.md").read_text().startswith("# Do generative models learn rare generative factors?")


def test_a_bad_output_file_and_the_presets_folder(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    main_fails(capsys, ztest.main, ["--u", "u.npz", "--r", "r.npz", "--save", tmp_path / "folder"],
               f"--save {tmp_path / 'folder'} is a folder, not a file", "accepted")
    (tmp_path / "afile").write_text("x\n")
    main_fails(capsys, ztest.main, ["--u", "u.npz", "--r", "r.npz", "--save", tmp_path / "afile" / "a.json"],
               "--save", "lies under", "not a folder")
    cell = tmp_path / "study" / "gan" / "colour-rare1-seed0"      # a results folder that cannot be written
    cell.mkdir(parents=True)
    (cell / "result.json").write_text((ROOT / "results/quick/gan/colour-rare1-seed0/result.json").read_text())
    (tmp_path / "study").chmod(0o555)
    try:
        main_fails(capsys, _presets, [tmp_path / "study", "--write"], "--write into", "is not writable")
        assert files(tmp_path / "study") == ["gan", "gan/colour-rare1-seed0", "gan/colour-rare1-seed0/result.json"]
    finally:
        (tmp_path / "study").chmod(0o755)
    assert files(tmp_path / "folder") == []


def test_output_problem_creates_nothing_and_accepts_a_new_folder(tmp_path):
    assert data.output_problem("--out-dir", str(tmp_path / "new" / "deeper")) is None
    assert data.output_problem("--out-dir", str(tmp_path)) is None and data.output_problem("--x", None) is None
    assert data.output_problem("--save", str(tmp_path / "new" / "a.json"), "file") is None
    assert files(tmp_path) == []


# --------------------------------------------------------------------------- issue 39: result.json checked
CELL = ROOT / "results" / "quick" / "gan" / "colour-rare1-seed0" / "result.json"


def _bad_cell(tmp_path, **changes):
    """A copy of a committed cell with `changes`, as tmp_path/gan/colour-rare1-seed0/result.json."""
    res = {**json.loads(CELL.read_text()), **changes}
    path = tmp_path / "gan" / "colour-rare1-seed0" / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res))
    return path


@pytest.mark.parametrize("changes, field, words", [
    ({"counts": "many"}, "counts", ["must be {'u': {'n'", "got str 'many'"]),              # was a TypeError traceback
    ({"format": "rgf-result/9"}, "format", ["'rgf-result/9'", "accepted: rgf-result/1"]),  # was read, exit 0
    ({"counts": {"u": {"n": [1] * 10, "k": [0] * 10}, "r": {"n": [1] * 9, "k": [0] * 9}}}, "counts", ["r.n", "10 integer"]),
    ({"counts": {"u": {"n": [1.5] * 10, "k": [0] * 10}, "r": {"n": [1] * 10, "k": [0] * 10}}}, "counts", ["u.n"]),
    ({"rare": "1"}, "rare", ["str '1'", "an integer class index 0..9"]),
    ({"classes": 10}, "classes", ["int 10"]),
    ({"factor": "purple"}, "factor", ["'purple'", "colour"]),
    ({"seed": True}, "seed", ["bool True"]),
    ({"readable": {"u": {"0.9": "x"}, "r": {}}}, "readable", ["threshold 0.9"]),
    ({"quality": "good"}, "quality", ["str 'good'"]),
    ({"p_in": 2}, "p_in", ["a number in [0, 1]"]),
])
@pytest.mark.parametrize("how", ["--cell", "tables"])
def test_a_bad_result_file_is_one_line_naming_the_file_and_the_field(changes, field, words, how, tmp_path, capsys):
    path = _bad_cell(tmp_path, **changes)
    argv = [path, "--cell"] if how == "--cell" else [tmp_path]
    main_fails(capsys, ztest.main, argv, str(path), f"'{field}" if field != "format" else "field 'format'", *words)


def test_a_finished_cell_with_a_damaged_result_is_one_line(tmp_path, capsys):
    """A model script that finds its cell done prints its result again: a damaged one is one line too."""
    path = _bad_cell(tmp_path, counts="many")
    args = model_parse(["--smoke", "--runs", str(tmp_path)])
    capsys.readouterr()
    main_fails(capsys, lambda argv: ztest.finished_result({"r": str(path.parent)}, args), [],
               str(path), "field 'counts'", "use --force to redo the cell")


def test_the_copy_of_a_good_cell_reads(tmp_path, capsys):
    """The control: the unchanged copy, and one without a "format" (older files), read as the committed one."""
    ztest.main([str(_bad_cell(tmp_path)), "--cell"])
    good = capsys.readouterr().out
    res = json.loads(CELL.read_text())
    del res["format"]
    (tmp_path / "old.json").write_text(json.dumps(res))
    ztest.main([str(tmp_path / "old.json"), "--cell"])
    assert capsys.readouterr().out == good and good.startswith("GAN, colour, rare class 1, seed 0\n")


# --------------------------------------------------------------------------- issue 39: five more bad inputs
def _calibration(argv):
    from study import calibration
    return calibration.main(argv)


def test_a_file_that_is_not_a_result_for_the_null_check_names_the_file(tmp_path, capsys):
    (tmp_path / "notes.json").write_text("not json\n")
    main_fails(capsys, ztest.main, ["--null-check", tmp_path / "notes.json"],
               f"cannot read results file {tmp_path / 'notes.json'}")       # was "Expecting value: ..." alone
    main_fails(capsys, _calibration, [tmp_path / "notes.json"], "notes.json")  # was a traceback, exit 1
    main_fails(capsys, _calibration, [], "required: paths")                    # was argparse's usage, two lines


@pytest.mark.parametrize("main, argv, option", [(vae.main, ["--smoke", "--runs", ""], "--runs"),
                                                (ztest.main, [QUICK, "--out-dir", ""], "--out-dir"),
                                                (data.main, ["--export", "--out-dir", ""], "--out-dir")])
def test_an_empty_output_path_an_unset_shell_variable(main, argv, option, tmp_path, capsys, monkeypatch):
    """`--runs $RUNS` with RUNS unset: the model scripts wrote into the current folder, ztest.py wrote nothing."""
    monkeypatch.chdir(tmp_path)
    main_fails(capsys, main, argv, f"{option} is empty", "accepted: a folder you can write to")
    assert files(tmp_path) == []


@pytest.mark.parametrize("main, argv", [(data.main, []), (vae.main, ["--smoke"]), (oracles.main, ["--smoke"]),
                                        (ztest.main, [QUICK])])
def test_a_data_root_that_is_a_file(main, argv, tmp_path, capsys):
    (tmp_path / "afile").write_text("x\n")
    main_fails(capsys, main, argv + ["--data-root", tmp_path / "afile", *(["--runs", tmp_path / "r"] if main is vae.main else [])],
               f"--data-root {tmp_path / 'afile'} is a file, not a folder", "MNIST/raw")
    assert files(tmp_path) == ["afile"]


def test_a_folder_without_results_and_an_unknown_option_of_the_study_tools(tmp_path, capsys):
    main_fails(capsys, ztest.main, [tmp_path], f"no result.json found in {tmp_path}", "accepted")
    main_fails(capsys, _presets, [QUICK, "--bogus"], "unrecognized arguments: --bogus")     # was two lines
    (tmp_path / "list.json").write_text("[1, 2]")
    main_fails(capsys, ztest.main, [tmp_path / "list.json"], "list.json holds list of 2, not a result object")


def test_an_unknown_print_or_summary(capsys):
    main_fails(capsys, ztest.main, [QUICK, "--print", "wide"], "--print", "'wide'", "table4", "full")
    main_fails(capsys, ztest.main, [QUICK, "--summary", "best"], "--summary 'best'", "answer")


# --------------------------------------------------------------------------- issue 39: sibling options
@pytest.mark.parametrize("main, option, words", [
    (gan.main, "--out-dir", ["the model scripts write under --runs DIR"]),
    (vae.main, "--output", ["--runs DIR"]), (ddpm.main, "--runs-dir", ["the runs folder is --runs DIR"]),
    (vae.main, "--data-dir", ["--data-root DIR"]),
    (ztest.main, "--runs-dir", ["--runs DIR is the runs folder", "an input"]),
    (ztest.main, "--output", ["--out-dir DIR", "--figures DIR", "--save FILE"]),
    (ztest.main, "--results", ["its arguments"]), (ztest.main, "--seed", ["--data-seed N"]),
    (data.main, "--output", ["under --out-dir DIR"]), (data.main, "--runs", ["under --out-dir DIR", "model scripts"]),
    (data.main, "--outdir", ["under --out-dir DIR"]),
])
def test_an_option_of_a_sibling_concept_names_the_right_one(main, option, words, tmp_path, capsys):
    line = main_fails(capsys, main, [option, tmp_path / "x"], f"{option} is not an option of ", *words)
    assert f"{option}=" not in line and files(tmp_path) == []
    main_fails(capsys, main, [f"{option}={tmp_path / 'x'}"], f"{option} is not an option of ", *words)


def test_the_sibling_hint_from_the_command_line_and_what_it_leaves_alone(tmp_path):
    r = run("gan.py", "--factor", "colour", "--out-dir", tmp_path / "x")
    one_line(r, "gan.py: error: --out-dir is not an option of gan.py: the model scripts write under --runs DIR")
    p = ztest.build_parser()
    assert cli.sibling(p, ["a.json", "--", "--output"], cli.ZTEST_SIBLINGS) is None       # after "--": a name
    assert cli.sibling(p, ["--runs", "R", "--out-dir", "T"], cli.ZTEST_SIBLINGS) is None  # its own options
    assert all(o not in p._option_string_actions for o in cli.ZTEST_SIBLINGS)
    assert all(o not in vae.build_parser()._option_string_actions for o in cli.MODEL_SIBLINGS)
    assert files(tmp_path) == []


# --------------------------------------------------------------------------- issue 39: the smoke line
def test_a_model_script_with_smoke_says_first_that_its_verdicts_mean_nothing(capsys, tmp_path):
    args = model_parse(["--smoke", "--runs", str(tmp_path / "r")])
    assert args.smoke and capsys.readouterr().out == data.SMOKE_LINE + "\n"
    model_parse(["--quick", "--runs", str(tmp_path / "r")])
    assert capsys.readouterr().out == ""
    with pytest.raises(SystemExit):                  # bad input: the one error line alone, no smoke line first
        model_parse(["--smoke", "--samples", "0"])
    assert capsys.readouterr().out == ""
