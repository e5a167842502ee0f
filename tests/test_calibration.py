"""The null check and the calibrated reading (study/calibration.py) on synthetic D_u models whose
training noise is known, and on the committed results.

    python -m pytest -q tests/test_calibration.py
"""
import math
import os

import numpy as np
import pytest

from study import calibration

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _result(seed, n, k, model="gan", factor="colour", rare=1):
    """A result.json as far as the null check reads it: the D_u model's counts, all and readable."""
    table = {"n": list(n), "k": list(k)}
    return {"run_name": model, "factor": factor, "rare": rare, "seed": seed, "data_seed": 0,
            "counts": {"u": table}, "readable": {"u": {"0.9": table}}}


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
    """The committed quick study: eq. 1 calls 39 of 140 null classes significant; the calibrated test,
    with tau^2 left out by factor, at most 7% under both readings; TAU2 is their pooled tau^2."""
    results = calibration.load([os.path.join(REPO, "results", "quick")])
    counts, taus, n_pairs = calibration.null_check(results)
    total = lambda reading, test: [sum(v[i] for k, v in counts.items() if k[:2] == (reading, test)) for i in (0, 1)]
    assert n_pairs >= 14
    for reading in calibration.READINGS:
        bad, n = total(reading, "calibrated")
        assert bad / n <= 0.07, (reading, bad, n)
        assert taus[reading] == pytest.approx(calibration.TAU2[reading], rel=0.01)
    if n_pairs == 14:
        assert total("all", "eq. 1") == [39, 140]


def test_the_command_line_refuses_a_folder_without_null_pairs(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        calibration.main([str(tmp_path)])
    assert e.value.code == 2 and "two --seed values" in capsys.readouterr().err
