"""A cell's report from its result.json (ztest.py RESULT.json --cell), and the provenance every new
result.json carries: one --smoke VAE run on the MNIST fixture (seconds), whose own printout the report
must reproduce line for line, with no training.

    python -m pytest -q tests/test_cell_report.py
"""
import contextlib
import io
import json
import os
import re

import pytest
import torch

import data
import vae
import ztest
from study import provenance, report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def smoke_run(mnist_root, cache_dir, tmp_path_factory):
    """(result.json path, the run's stdout) of one --smoke VAE run, colour, rare 1."""
    runs = tmp_path_factory.mktemp("cell") / "runs"
    threads, printed = torch.get_num_threads(), io.StringIO()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(printed):
            vae.main(["--smoke", "--device", "cpu", "--data-root", mnist_root, "--cache-dir", cache_dir,
                      "--runs", str(runs), "--prior", "normal"])      # (one reading: the report is the point)
    finally:
        torch.set_num_threads(threads)
    return runs / "vae" / "colour-rare1-seed0" / "result.json", printed.getvalue()


def _blocks(text):
    return [b for b in text.split("\n\n") if b.strip()]


def test_a_smoke_run_and_its_cell_report_begin_with_the_smoke_line(smoke_run, capsys):
    path, printed = smoke_run
    assert printed.splitlines()[0] == data.SMOKE_LINE, "the smoke run did not say first that its verdicts mean nothing"
    assert printed.count(data.SMOKE_LINE) == 1
    capsys.readouterr()
    ztest.main([str(path), "--cell"])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == data.SMOKE_LINE and out.count("SMOKE") == 1
    assert json.loads(path.read_text())["config"]["smoke"] is True


def test_a_non_smoke_cell_and_a_smoke_audit_do_not_begin_with_the_smoke_line(tmp_path, capsys):
    committed = os.path.join(REPO, "results", "quick", "gan", "colour-rare1-seed0", "result.json")
    ztest.main([committed, "--cell"])
    cap = capsys.readouterr()
    assert "SMOKE" not in cap.out + cap.err
    res = json.loads(open(committed).read())
    audit = {k: v for k, v in res.items() if k != "config"}         # an audit: no config, smoke oracles
    (tmp_path / "audit.json").write_text(json.dumps({**audit, "oracle_smoke": True}))
    ztest.main([str(tmp_path / "audit.json"), "--cell"])
    cap = capsys.readouterr()
    assert cap.out.startswith("GAN, colour, rare class 1, seed 0\n") and cap.err.splitlines()[0] == report.SMOKE_ORACLES
    (tmp_path / "smoke.json").write_text(json.dumps({**res, "config": {**res["config"], "smoke": True}}))
    ztest.main([str(tmp_path / "smoke.json"), "--cell"])
    assert capsys.readouterr().out.splitlines()[:2] == [data.SMOKE_LINE, "GAN, colour, rare class 1, seed 0"]


def test_cell_report_reprints_the_runs_own_z_table_and_quality_report(smoke_run, capsys):
    path, printed = smoke_run
    capsys.readouterr()
    ztest.main([str(path), "--cell"])
    out = capsys.readouterr().out
    assert out.startswith(data.SMOKE_LINE + "\n")
    out = out[len(data.SMOKE_LINE) + 1:]             # the smoke line, then the report as the run printed it
    ztable, letters, rest = _blocks(out)[0], _blocks(out)[1], _blocks(out)[2]
    assert ztable.startswith("VAE, colour, rare class 1, seed 0\n") and ztable in printed, \
        "the z-table differs from the one the run printed"
    quality, taus, origin = rest.strip().rsplit("\n", 2)
    assert quality.startswith("sample quality:") and quality in printed, "the quality report differs"
    assert taus.startswith("tau^2 of the calibrated tests: oracle 0.000555 (pooled)")     # one seed: pooled
    # the letters under every reading: one row per class and Total, six readings
    lines = letters.splitlines()
    assert lines[1].split() == ["class", "ours", "paper's", "equivalence", "readable", "calibrated", "morphometric"]
    assert [ln.split()[0] for ln in lines[3:]] == [str(d) for d in range(10)] + ["Total"]
    assert all(len(ln.split()) == 7 for ln in lines[3:]) and all(ln.split()[-1] == "x" for ln in lines[3:])
    res = json.loads(path.read_text())
    assert [ln.split()[1] for ln in lines[3:]] == [r["verdict"] for r in res["rows"]]
    assert origin.startswith("made ") and (res["provenance"]["cpu"] in origin)


def test_cell_report_picks_a_cell_among_several_and_refuses_an_unknown_one(smoke_run, capsys):
    path, _ = smoke_run
    runs = str(path.parent.parent.parent)
    ztest.main([runs, "--cell", "vae/colour-rare1-seed0"])
    assert capsys.readouterr().out.startswith(data.SMOKE_LINE + "\nVAE, colour, rare class 1, seed 0\n")
    with pytest.raises(SystemExit) as e:
        ztest.main([runs, "--cell", "gan/colour-rare1-seed0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "vae/colour-rare1-seed0" in err


def test_committed_result_without_provenance_still_reports(capsys):
    """An older result (no provenance, absolute paths of its machine) is read as before."""
    ztest.main([os.path.join(REPO, "results", "quick", "gan", "colour-rare1-seed0", "result.json"), "--cell"])
    out = capsys.readouterr().out
    assert out.startswith("GAN, colour, rare class 1, seed 0\n") and "sample quality:" in out
    assert "no provenance recorded" in out


def test_a_new_result_carries_its_provenance_and_relative_paths(smoke_run):
    path, _ = smoke_run
    res = json.loads(path.read_text())
    p = res["provenance"]
    assert set(provenance.PACKAGES) == set(p["versions"]) and all(p["versions"].values())
    assert res["torch"] == torch.__version__ and res["torch"].startswith(p["versions"]["torch"])
    assert p["cpu"] and p["gpu"] is None and p["python"]
    if p["commit"] is not None:                              # a git checkout (CI, a clone)
        assert re.fullmatch(r"[0-9a-f]{40}", p["commit"]) and isinstance(p["dirty"], bool)
    else:
        assert p["dirty"] is None
    # output paths relative to the run folder: nothing names the machine's folders
    assert res["dirs"] == {"u": os.path.join("..", "colour-balanced-seed0"), "r": "."}
    assert res["config"]["runs"] == os.path.join("..", "..")
    text = path.read_text()
    assert str(path.parent.parent.parent) not in text, "an absolute output path is left in result.json"


def test_provenance_names_the_gpu_of_a_cuda_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: f"Fake GPU {d}")
    assert provenance.record("cuda:0")["gpu"] == "Fake GPU cuda:0" and provenance.record("cpu")["gpu"] is None


def test_provenance_without_git_is_null_not_an_error(tmp_path, monkeypatch):
    assert provenance.code_version(str(tmp_path)) == {"commit": None, "dirty": None}   # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path))                                         # no git at all
    assert provenance.code_version() == {"commit": None, "dirty": None}
    assert provenance.relative(None, "x") is None
