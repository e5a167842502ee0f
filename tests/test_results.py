"""The committed quick study (results/quick/): its tables re-render from its result files alone,
byte for byte, under every reading, without training and without the data; so do the SD sweep's
(results/quick-sd-sweep/lambda<L>/, the GAN next to the GAN-SD with that lambda).

    python -m pytest -q tests/test_results.py
"""
import filecmp
import os

import pytest

import ztest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join("results", "quick")
# committed folder -> the ztest.py options that made it (README: "The committed tables")
READINGS = {"tables": [], "tables-readable": ["--summary", "readable"], "tables-equivalence": ["--summary", "equivalence"],
            "tables-paper": ["--summary", "paper", "--min-n", "0"],
            "compare": ["--paper", os.path.join("results", "paper", "paper-cells.csv")],
            "compare-readable": ["--summary", "readable", "--paper", os.path.join("results", "paper", "paper-cells.csv")]}


def _has_results():
    return any("result.json" in files for _, _, files in os.walk(os.path.join(REPO, STUDY)))


@pytest.mark.skipif(not _has_results(), reason="no committed study under results/quick yet")
@pytest.mark.parametrize("folder", sorted(READINGS))
def test_committed_tables_are_reproduced_from_the_committed_results(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)                       # rows.csv names each result file by its path from here
    committed = os.path.join(STUDY, folder)
    assert os.path.isdir(committed), f"{committed} is missing: render it with python ztest.py {STUDY} --out-dir ..."
    _assert_rerenders([STUDY, *READINGS[folder]], committed, tmp_path, capsys)


def _assert_rerenders(ztest_args, committed, out, capsys):
    """ztest.py ztest_args --out-dir out makes exactly the files of the committed folder, byte for byte."""
    ztest.main([*ztest_args, "--out-dir", str(out)])
    capsys.readouterr()
    made = sorted(os.listdir(out))
    assert made == sorted(f for f in os.listdir(committed) if not f.startswith(".")), "other files than committed"
    differ = [f for f in made if not filecmp.cmp(out / f, os.path.join(committed, f), shallow=False)]
    assert not differ, f"re-rendered tables differ from the committed ones in {committed}: {differ}"


SWEEP = os.path.join("results", "quick-sd-sweep")


def _sweep_folders():
    """Committed lambda<L> folders of the SD sweep, each with the two run folders it is rendered from:
    the plain GAN and the GAN-SD with that lambda (gan-sd for the paper's 0.8, gan-sd<L> otherwise)."""
    root = os.path.join(REPO, SWEEP)
    if not os.path.isdir(root):
        return []
    out = []
    for d in sorted(os.listdir(root)):
        if d.startswith("lambda"):
            lam = d[len("lambda"):]
            out.append((d, [os.path.join(SWEEP, "gan"), os.path.join(SWEEP, "gan-sd" if lam == "0.8" else f"gan-sd{lam}")]))
    return out


@pytest.mark.skipif(not _sweep_folders(), reason="no committed SD sweep under results/quick-sd-sweep yet")
@pytest.mark.parametrize("folder,runs", _sweep_folders() or [("none", [])])
def test_committed_sd_sweep_tables_are_reproduced(folder, runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    committed = os.path.join(SWEEP, folder)
    _assert_rerenders(runs, committed, tmp_path, capsys)
