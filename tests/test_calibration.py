"""The null check and the calibrated reading (study/calibration.py) on synthetic D_u models whose
training noise is known, and on the committed results.

    python -m pytest -q tests/test_calibration.py
"""
import math
import os

import numpy as np
import pytest

import ztest
from study import calibration

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _result(seed, n, k, model="gan", factor="colour", rare=1):
    """A result.json as far as the null check reads it: the D_u model's counts, all and readable."""
    table = {"n": list(n), "k": list(k)}
    return {"run_name": model, "model": model.upper(), "factor": factor, "rare": rare, "seed": seed,
            "data_seed": 0, "classes": [str(c) for c in range(len(table["n"]))], "counts": {"u": table},
            "readable": {"u": {"0.9": table}}}


def _noisy_models(tau, seeds, rng, n=1000, classes=200):
    """D_u models whose class shares P differ between seeds by N(0, tau^2) around 0.5, each sampled
    binomially n times per class."""
    out = []
    for s in range(seeds):
        p = np.clip(0.5 + rng.normal(0, tau, classes), 0.01, 0.99)
        out.append(_result(s, [n] * classes, rng.binomial(n, p)))
    return out


def test_identical_seeds_read_l_in_every_class_under_every_test():
    same = [_result(s, [1000] * 10, [500] * 10) for s in (0, 1)]
    counts, taus, n_pairs = calibration.null_check(same)
    assert n_pairs == 1 and taus["all"] == 0.0
    assert all(bad == 0 and n == 10 for bad, n in counts.values())


def test_tau2_recovers_the_training_noise_it_was_given():
    rng = np.random.default_rng(0)
    pairs = calibration.null_pairs(_noisy_models(0.05, 3, rng))
    assert len(pairs) == 3
    assert math.sqrt(calibration.tau2(pairs, "all")) == pytest.approx(0.05, rel=0.15)


def test_eq1_over_rejects_on_noisy_seeds_and_the_calibrated_test_does_not():
    """Training noise of sd 0.05 with 1,000 samples a class: eq. 1 calls most null classes significant;
    the calibrated test, with tau^2 from another factor's pairs (leave one factor out), about 5%."""
    rng = np.random.default_rng(1)
    results = _noisy_models(0.05, 3, rng) + [dict(r, factor="thin") for r in _noisy_models(0.05, 3, rng)]
    counts, _, n_pairs = calibration.null_check(results)
    rate = lambda test: (sum(v[0] for k, v in counts.items() if k[:2] == ("all", test))
                         / sum(v[1] for k, v in counts.items() if k[:2] == ("all", test)))
    assert n_pairs == 6
    assert rate("eq. 1") > 0.5
    assert rate("calibrated") < 0.09


def test_two_d_u_tables_for_one_model_are_refused():
    with pytest.raises(ValueError, match="two D_u tables"):
        calibration.du_tables([_result(0, [10] * 10, [5] * 10), _result(0, [10] * 10, [4] * 10)])


def test_the_committed_null_pairs_give_the_measured_rates():
    """The committed quick study: eq. 1 calls 50 of 170 null classes significant; the calibrated test,
    with tau^2 left out by factor, at most 7% under both readings; TAU2 is their pooled tau^2."""
    results = calibration.load([os.path.join(REPO, "results", "quick")])
    counts, taus, n_pairs = calibration.null_check(results)
    total = lambda reading, test: [sum(v[i] for k, v in counts.items() if k[:2] == (reading, test)) for i in (0, 1)]
    assert n_pairs >= 14
    for reading in calibration.READINGS:
        bad, n = total(reading, "calibrated")
        assert bad / n <= 0.07, (reading, bad, n)
        assert taus[reading] == pytest.approx(calibration.TAU2[reading], rel=0.01)
    if n_pairs == 17:             # colour (4 models, 3 seeds), thin (VAE, DM) and thick (VAE, GAN, DM): 2 seeds
        assert total("all", "eq. 1") == [50, 170]


def test_the_command_line_refuses_a_folder_without_null_pairs(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        calibration.main([str(tmp_path)])
    assert e.value.code == 2 and "two --seed values" in capsys.readouterr().err


# --- the null check under every reading of the tables (ztest.py --null-check) -----------------------
def _rates(letters):
    """{reading: share of classes not L} over every pair, "x" (no counts for the reading) left out."""
    out = {}
    for (how, _, _), v in letters.items():
        kept = [x for x in v if x != "x"]
        bad, n = out.get(how, (0, 0))
        out[how] = (bad + len(kept) - kept.count("L"), n + len(kept))
    return {how: bad / n for how, (bad, n) in out.items() if n}


def test_a_synthetic_null_pair_reads_l_everywhere_when_the_seeds_agree():
    same = [_result(s, [1000] * 10, [500] * 10) for s in (0, 1)]
    rates = _rates(ztest.null_check(same))
    assert set(rates) >= {"ours", "paper", "equivalence", "readable", "calibrated"}
    assert all(r == 0.0 for r in rates.values()), rates
    text = calibration.format_null_letters(ztest.null_check(same))
    assert "GAN/colour" in text and "0/10" in text and "\nmorphometric " not in text   # no morphometric counts


def test_the_null_check_over_rejects_with_eq1_and_not_with_the_calibrated_reading():
    """Training noise of sd 0.05 on 1,000 samples a class, two factors with three seeds each: eq. 1 (ours,
    paper) calls most null classes significant; the calibrated reading, its tau^2 left out by factor,
    about the nominal 5%."""
    rng = np.random.default_rng(2)
    results = _noisy_models(0.05, 3, rng) + [dict(r, factor="thin") for r in _noisy_models(0.05, 3, rng)]
    rates = _rates(ztest.null_check(results))
    assert rates["ours"] > 0.5 and rates["paper"] > 0.5
    assert rates["calibrated"] < 0.09


def test_a_d_u_only_run_reads_as_a_null_pair(tmp_path):
    """du.json, what --stage u leaves, is the D_u half of a result: two seeds of it make a null pair."""
    import json
    args = {"dataset": "mnist", "factor": "thin", "seed": 0, "data_seed": 0, "samples": 100, "oracles": "robust"}
    table = {"n": [10] * 10, "k": [5] * 10}
    for seed in (0, 1):
        rec = calibration.du_record({**args, "seed": seed}, "VAE", "vae", table, {"0.9": table})
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "du.json").write_text(json.dumps(rec))
    results = calibration.load([str(tmp_path)])
    assert [r["format"] for r in results] == [calibration.DU_FORMAT] * 2
    pairs = calibration.null_results(results)
    assert len(pairs) == 1 and pairs[0]["model"] == "VAE" and pairs[0]["seed"] == (0, 1)
    assert _rates(ztest.null_check(results))["ours"] == 1.0    # 10 samples a class: "n", never L


def test_the_committed_null_check_under_the_calibrated_reading_is_near_nominal():
    """The committed quick study, every null pair: eq. 1 as we read it (ours) 50 of 170 classes not L;
    the calibrated reading, tau^2 left out by factor, at most 7%."""
    results = calibration.load([os.path.join(REPO, "results", "quick")])
    letters = ztest.null_check(results)
    rates = _rates(letters)
    assert rates["calibrated"] <= 0.07, rates
    if len(calibration.null_pairs(results)) == 17:
        assert sum(len(v) - v.count("L") for k, v in letters.items() if k[0] == "ours") == 50


def test_the_calibrated_reading_keeps_the_colour_rare_digit_memorised():
    """Calibrating the test does not kill its power: in every committed colour cell of the GAN, the
    GAN-SD and the DM, the rare digit is still M under the calibrated reading."""
    results = [r for r in calibration.load([os.path.join(REPO, "results", "quick")])
               if r["factor"] == "colour" and r["model"] in ("GAN", "GAN-SD", "DM") and "rows" in r]
    assert len(results) >= 18
    for res in results:
        row = ztest.result_rows(res)[res["rare"]]
        assert row["verdict_cal"] == "M", (res["model"], res["rare"], res["seed"], row["z_cal"], row["P_r_cal"])
