"""study/presets.py: the preset a result was made with (from its config), whether its models fit their
data (issue 29's checks: the rare digit's fit on D_r, the D_u baseline, readability), and the committed
results/quick/presets.md kept up to date.

    python -m pytest -q tests/test_presets.py
"""
import copy
import glob
import json
import os
import subprocess
import sys

import pytest

from study import presets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "results", "quick")


def committed(run, cell):
    with open(os.path.join(QUICK, run, cell, "result.json")) as fh:
        return json.load(fh)


def test_every_committed_result_names_its_preset():
    labels = {}
    for path in glob.glob(os.path.join(QUICK, "*", "*", "result.json")):
        with open(path) as fh:
            res = json.load(fh)
        labels[path] = presets.preset(res)
    assert labels and "custom" not in labels.values(), [p for p, v in labels.items() if v == "custom"]


def test_the_preset_follows_the_config():
    res = committed("vae", "thick-rare1-seed1")
    assert presets.preset(res) == "quick/1"                       # older configs lack --prior: N(0, I)
    gmm = copy.deepcopy(res)
    gmm["config"].update(prior="gmm", components=100)
    assert presets.preset(gmm) == "quick/2"
    assert presets.preset({**gmm, "run_name": "vae-mix"}) == "quick/2"     # the same models, resampled: no "+"
    paper_vae = copy.deepcopy(res)
    paper_vae["config"].update(quick=False, cpu_full=True)
    assert presets.preset(paper_vae) == "cpu-full/2"                 # --cpu-full's VAE read from N(0, I)
    gmm["config"]["components"] = 10
    assert presets.preset(gmm) == "custom"
    gmm["config"]["quick"] = False
    assert presets.preset(gmm) == "paper"
    assert presets.preset(committed("gan-sd", "colour-rare1-seed0")) == "quick/1+"   # the GAN's, with SD
    full = copy.deepcopy(committed("ddpm", "thick-rare1-seed1"))
    full["config"].update(quick=False, cpu_full=True, epochs=40)
    assert presets.preset(full) == "cpu-full/1"
    full["config"]["epochs"] = 8                                  # --cpu-full --epochs 8: not the preset
    assert presets.preset(full) == "custom"
    gan = copy.deepcopy(committed("gan", "colour-rare1-seed0"))
    gan["config"].update(quick=False, cpu_full=True)
    assert presets.preset(gan) == "cpu-full/1"                    # the GAN's --cpu-full before it had its own
    gan["config"].update(epochs=35, lr=4e-4)
    assert presets.preset(gan) == "cpu-full/2"
    gan["config"]["epochs"] = 45
    assert presets.preset(gan) == "cpu-full/3"


def synthetic(fit_r=0.9, p_u=0.5, low_digit=100, confident=0.7, run_name="gan"):
    """A D_r result with 1,000 readable samples per model: digit 1 is rare; the fit read by the factor oracle."""
    hist = [low_digit] + [100] * 9
    n = [100] * 10
    k = [50] * 10
    k[1] = round(p_u * 100)
    return {"run_name": run_name, "rare": 1, "factor": "colour", "config": {"quick": True},
            "readable": {"u": {"0.9": {"n": n, "k": k}}, "r": {"0.9": {"n": n, "k": k}}},
            "quality": {"u": {"histogram": hist, "confident": confident}, "r": {"histogram": hist, "confident": 0.8},
                        "fit": {"fit_u": p_u, "fit_r": fit_r, "measure": "factor oracle"}}}


@pytest.mark.parametrize("change, failed", [({}, None), ({"fit_r": 0.79}, "fits"), ({"p_u": 0.75}, "baseline"),
                                            ({"low_digit": 40}, "baseline"), ({"confident": 0.55}, "readable")])
def test_fit_check_fails_exactly_the_check_that_misses(change, failed):
    c = presets.fit_check(synthetic(**change))
    for key in ("fits", "baseline", "readable"):
        assert c[key] is (key != failed), (key, c)
    assert c["ok"] is (failed is None)


def test_the_vae_needs_less_readability():
    assert presets.fit_check(synthetic(confident=0.5, run_name="vae"))["readable"] is True
    assert presets.fit_check(synthetic(confident=0.5, run_name="gan"))["readable"] is False


def test_an_unmeasured_stroke_fit_is_not_a_verdict():
    res = committed("vae", "thin-rare1-seed0")                    # no morphometric reading stored
    c = presets.fit_check(res)
    assert c["fit_r"] is None and c["fits"] is None and c["baseline"] and c["readable"] and c["ok"] is None
    c = presets.fit_check(committed("vae", "thick-rare1-seed0"))  # ... whose rarest digit is 45 per 1,000
    assert c["fits"] is None and c["baseline"] is False and c["ok"] is False


@pytest.mark.parametrize("folder", ["results/quick", "results/fit-check"])
def test_committed_presets_md_is_up_to_date(folder):
    with open(os.path.join(REPO, folder, "presets.md")) as fh:
        saved = fh.read()
    r = subprocess.run([sys.executable, "-m", "study.presets", folder], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == saved, f"{folder}/presets.md is stale: python -m study.presets {folder} --write"


def test_a_folder_without_results_is_one_line_and_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "study.presets", str(tmp_path)], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert str(tmp_path) in r.stderr and not os.listdir(tmp_path)
