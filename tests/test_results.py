"""The committed quick study (results/quick/): its tables re-render from its result files alone,
byte for byte, under every reading, without training and without the data; so do the SD sweep's
(results/quick-sd-sweep/lambda<L>/, the GAN next to the GAN-SD with that lambda), and the committed
figures that need no runs/ folder (results/figures/: Figure 3 and the Table 4 heat maps). A PNG holds
the matplotlib version that drew it, and its pixels depend on it: with another version installed the
figures are skipped, not failed.

    python -m pytest -q tests/test_results.py
"""
import filecmp
import os

import matplotlib
import PIL.Image
import pytest

import ztest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join("results", "quick")
# committed folder -> the ztest.py options that made it (README: "The committed tables")
READINGS = {"tables": [], "tables-readable": ["--summary", "readable"], "tables-equivalence": ["--summary", "equivalence"],
            "tables-paper": ["--summary", "paper", "--min-n", "0"], "tables-calibrated": ["--summary", "calibrated"],
            "compare": ["--paper", os.path.join("results", "paper", "paper-cells.csv")],
            "compare-readable": ["--summary", "readable", "--paper", os.path.join("results", "paper", "paper-cells.csv")]}


def _has_results():
    return any("result.json" in files for _, _, files in os.walk(os.path.join(REPO, STUDY)))


SEED0 = os.path.join("results", "cpu-full")        # the seed-0 study on the fitting presets (issue 38)
QUICK = ["--against", STUDY]        # the letters that changed against the quick study: one more table
SEED0_READINGS = {"tables": QUICK, "tables-answer": ["--summary", "answer", *QUICK],
                  "compare": ["--paper", os.path.join("results", "paper", "paper-cells.csv")]}


@pytest.mark.parametrize("folder", [f for f in sorted(SEED0_READINGS) if os.path.isdir(os.path.join(REPO, SEED0, f))]
                         or [pytest.param("none", marks=pytest.mark.skip(reason="no tables under results/cpu-full yet"))])
def test_the_seed0_study_re_renders_from_its_result_files(folder, tmp_path, monkeypatch, capsys):
    """results/cpu-full/<tables>: what ztest.py makes from the committed result.json and du.json files of the
    seed-0 study, byte for byte, without training; every committed result file is read (none left out)."""
    monkeypatch.chdir(REPO)
    _assert_rerenders([SEED0, *SEED0_READINGS[folder]], os.path.join(SEED0, folder), tmp_path, capsys)
    rows = open(os.path.join(SEED0, folder, "rows.csv")).read()
    files = [os.path.join(d, f) for d, _, fs in os.walk(SEED0) for f in fs if f == "result.json"]
    assert files and all(f in rows for f in files), [f for f in files if f not in rows][:3]


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


FIGURES = os.path.join("results", "figures")
PAPER = os.path.join("results", "paper", "paper-cells.csv")


def _drawn_elsewhere():
    """The reason to skip the figures: none committed, or drawn by another matplotlib than this one."""
    pngs = [f for f in os.listdir(os.path.join(REPO, FIGURES)) if f.startswith(("figure3-", "table4-"))] \
        if os.path.isdir(os.path.join(REPO, FIGURES)) else []
    if not pngs or not _has_results():
        return "no committed figures under results/figures yet"
    with PIL.Image.open(os.path.join(REPO, FIGURES, pngs[0])) as im:
        by = im.info.get("Software", "")
    return None if by.startswith(f"Matplotlib version{matplotlib.__version__},") else \
        f"the figures were drawn by {by or 'an unknown program'}; this is matplotlib {matplotlib.__version__}"


@pytest.mark.skipif(bool(_drawn_elsewhere()), reason=_drawn_elsewhere() or "")
@pytest.mark.parametrize("summary", ["ours", "readable", "answer"])
def test_committed_figures_are_redrawn_byte_for_byte(summary, tmp_path, monkeypatch, capsys):
    """ztest.py results/quick [--summary readable] --paper ... --figures draws Figure 3 of the GAN and the
    GAN-SD and table4-<summary>.png: each the committed file, byte for byte (the sample grid needs runs/)."""
    monkeypatch.chdir(REPO)
    ztest.main([STUDY, "--summary", summary, "--paper", PAPER, "--figures", str(tmp_path)])
    capsys.readouterr()
    drawn = sorted(os.listdir(tmp_path))
    assert f"table4-{summary}.png" in drawn and any(f.startswith("figure3-") for f in drawn)
    committed = set(os.listdir(FIGURES))
    assert set(drawn) <= committed, f"figures drawn but not committed: {sorted(set(drawn) - committed)}"
    differ = [f for f in drawn if not filecmp.cmp(tmp_path / f, os.path.join(FIGURES, f), shallow=False)]
    assert not differ, f"redrawn figures differ from the committed ones in {FIGURES}: {differ}"
