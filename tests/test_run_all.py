"""Tests of run_all.sh, the grid runner.

Most tests drive the runner with a FAKE interpreter (`--python <tmp>/fakepy`): a small Python script
that stands in for `python vae.py ...` / `python ztest.py ...`, writes the files a real script would
write, and appends every start and end to a journal. That tests the runner's own logic (listing,
skipping, resuming, failures, parallel slots) in seconds. The last two tests use the real scripts: one
checks that run_all.sh expects each cell's output where the scripts write it, one runs vae.py and
ztest.py with --smoke on the offline MNIST fixture.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import data

ROOT = Path(__file__).resolve().parent.parent
RUN_ALL = ROOT / "run_all.sh"

# The stand-in for a model script or ztest.py. It mimics the contract's run layout:
# runs/<run>/<factor>-balanced-seed<s>/ for --stage u, runs/<run>/<factor>-rare<k>[-pin..-pout..]-seed<s>/
# result.json for --stage r (without the D_u model it exits 0 with no result, as ztest does).
# FAKE_FAIL=<substring of the cell> makes that cell exit 3; FAKE_SLEEP=<seconds> makes every cell that long,
# FAKE_SLEEP_U=<seconds> the D_u cells that much longer.
FAKE = textwrap.dedent(r'''
    #!{python}
    import argparse, json, os, sys, time
    if sys.argv[1] == "-c":                 # run_all.sh asking whether the interpreter imports the project
        sys.exit(0)
    journal = os.environ["FAKE_JOURNAL"]
    def note(*words):
        with open(journal, "a") as fh:
            fh.write(" ".join(str(w) for w in words) + "\n")
    script = sys.argv[1]
    if script == "-":                       # run_all.sh asking data.py whether CompCars is there
        sys.exit(0 if os.environ.get("FAKE_CARS") else 1)
    if script == "ztest.py":
        if os.environ.get("FAKE_ZTEST_FAIL"):
            print("ztest.py: error: broken", file=sys.stderr); sys.exit(2)
        files = [a for a in sys.argv[2:] if a.endswith(".json")]
        out = sys.argv[sys.argv.index("--out-dir") + 1]
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "tables.md"), "w") as fh:
            fh.write("\n".join(files) + "\n")
        open(os.path.join(out, "table1.csv"), "w").write("digit\n")
        open(os.path.join(out, "tables.txt"), "w").write("Table 1 of the fake\n")
        open(os.path.join(out, "argv.txt"), "w").write(" ".join(sys.argv[2:]))
        note("ztest", out, *files)
        sys.exit(0)
    if script == "oracles.py":              # the oracle step: trains nothing here
        a = sys.argv[2:]
        name = "oracles/" + ("cars" if "--dataset" in a else a[a.index("--factor") + 1])
        note("oracle", name, "smoke" if "--smoke" in a else "-")
        sys.exit(3 if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in name else 0)
    p = argparse.ArgumentParser()
    for o in ("--factor", "--dataset", "--rare", "--seed", "--stage", "--runs", "--p-in", "--p-out",
              "--sd-lambda", "--data-root", "--device", "--min-n", "--data-seed", "--oracles"):
        p.add_argument(o)
    for o in ("--quick", "--smoke", "--force"):
        p.add_argument(o, action="store_true")
    a = p.parse_args(sys.argv[2:])
    run = script[:-3]
    if run == "gan" and float(a.sd_lambda) > 0:
        lam = float(a.sd_lambda)
        run = "gan-sd" if lam == 0.8 else f"gan-sd{{lam:g}}"
    d = "cars" if a.dataset == "cars" else a.factor
    udir = os.path.join(a.runs, run, f"{{d}}-balanced-seed{{a.seed}}")
    if a.stage == "u":
        cell = f"{{run}}/{{d}}-balanced-seed{{a.seed}}"
    else:
        skew = f"-pin{{float(a.p_in):g}}-pout{{float(a.p_out):g}}" if a.p_in else ""
        cell = f"{{run}}/{{d}}-rare{{a.rare}}{{skew}}-seed{{a.seed}}"
    note("start", cell, os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES", "-"),
         "smoke" if a.smoke else "-", "force" if a.force else "-")
    print("fake training", cell, flush=True)
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")) + float(os.environ.get("FAKE_SLEEP_U", "0")) * (a.stage == "u"))
    if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in cell:
        print("fake failure", file=sys.stderr); sys.exit(3)
    if a.stage == "u":
        os.makedirs(udir, exist_ok=True)
        open(os.path.join(udir, "{u_marker}"), "w").write("{{}}")
    else:
        if not os.path.exists(os.path.join(udir, "{u_marker}")):   # like ztest: D_r only, no z-test
            print("no D_u samples yet"); note("end", cell); sys.exit(0)
        rdir = os.path.join(a.runs, cell)
        res = os.path.join(rdir, "result.json")
        config = {{"quick": a.quick, "smoke": a.smoke}}
        if os.path.exists(res) and not a.force:       # like ztest: the same settings or exit 2
            if json.load(open(res))["config"] != config:
                print("fake: error: result.json was made with other settings", file=sys.stderr); sys.exit(2)
        os.makedirs(rdir, exist_ok=True)
        with open(res, "w") as fh:
            json.dump({{"cell": cell, "config": config}}, fh, indent=1)
    note("end", cell)
''').lstrip()

U_MARKER = "samples.npz"   # the file run_all.sh takes as "this D_u model is done"


@pytest.fixture
def fake(tmp_path):
    """A fake interpreter in tmp_path plus the environment and paths to drive run_all.sh with it."""
    py = tmp_path / "fakepy"
    py.write_text(FAKE.format(python=sys.executable, u_marker=U_MARKER))
    py.chmod(0o755)
    journal = tmp_path / "journal.txt"
    journal.touch()
    env = dict(os.environ, FAKE_JOURNAL=str(journal))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return {"python": str(py), "journal": journal, "env": env,
            "out": tmp_path / "runs", "results": tmp_path / "results"}


def run_all(fake, *args, env=None, **kw):
    cmd = ["bash", str(RUN_ALL), "--python", fake["python"], "--runs", str(fake["out"]),
           "--out-dir", str(fake["results"]), *args]
    return subprocess.run(cmd, cwd=ROOT, env=dict(fake["env"], **(env or {})), capture_output=True,
                          text=True, timeout=120, **kw)


def journal(fake, kind):
    """Cells in the journal with the given event, in order ("start" / "end" / "ztest")."""
    return [line.split()[1] for line in fake["journal"].read_text().splitlines()
            if line.split()[0] == kind]


# --------------------------------------------------------------------------- --list
def test_list_prints_one_command_per_cell_and_runs_nothing(fake):
    r = run_all(fake, "--list", "--models", "vae,gan-sd", "--factors", "colour,thin", "--rares", "1,2",
                "--seeds", "0,1", "--quick")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # the oracles of 2 factors; D_u cells: 2 models x 2 factors x 2 seeds; D_r cells: twice as many
    assert len(lines) == 2 + 8 + 16
    out, py = fake["out"], fake["python"]
    assert lines[:2] == [f"{py} oracles.py --factor colour", f"{py} oracles.py --factor thin"]
    assert lines[2] == f"{py} vae.py --factor colour --seed 0 --stage u --runs {out} --quick"
    assert f"{py} gan.py --sd-lambda 0.8 --factor thin --rare 2 --seed 1 --stage r --runs {out} --quick" in lines
    assert all("--stage u" in l for l in lines[2:10]) and all("--stage r" in l for l in lines[10:])
    assert len(set(lines)) == len(lines)
    assert not fake["results"].exists() and not fake["out"].exists()   # nothing run, nothing written
    assert fake["journal"].read_text() == ""


def test_list_paths_are_relative_to_the_caller(fake, tmp_path):
    r = subprocess.run(["bash", str(RUN_ALL), "--list", "--python", fake["python"], "--models", "vae",
                        "--factors", "colour", "--rares", "1", "--runs", "myruns", "--data-root", "d"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].endswith(f"oracles.py --factor colour --data-root {tmp_path}/d")
    assert r.stdout.splitlines()[1].endswith(f"--runs {tmp_path}/myruns --data-root {tmp_path}/d")
    r = subprocess.run(["bash", str(RUN_ALL), "--list", "--models", "vae", "--factors", "colour"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)   # from the repository root
    assert r.stdout.splitlines()[1].endswith("vae.py --factor colour --seed 0 --stage u --runs runs")


def test_list_sweep_skew_and_stage(fake):
    r = run_all(fake, "--list", "--models", "gan,gan-sd", "--factors", "colour", "--rares", "1",
                "--lambdas", "0.1,0.8", "--skew", "0.9,0.1", "--stage", "r")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # 3 runs (gan, gan-sd0.1, gan-sd) x (strict + skewed) D_r cells, no D_u cells (--stage r)
    assert len(lines) == 6
    assert sum("--sd-lambda 0 " in l for l in lines) == 2
    assert sum("--sd-lambda 0.1 " in l for l in lines) == 2
    assert sum("--p-in 0.9 --p-out 0.1" in l for l in lines) == 3


def test_cars_is_a_note_when_absent_and_cells_when_present(fake):
    r = run_all(fake, "--list", "--models", "vae", "--factors", "cars")
    assert r.returncode == 0 and r.stdout == ""
    assert "CompCars skipped" in r.stderr
    r = run_all(fake, "--list", "--models", "vae", "--factors", "cars", env={"FAKE_CARS": "1"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("oracles.py --dataset cars") and len(lines) == 3
    assert lines[2].endswith(f"vae.py --dataset cars --rare 0 --seed 0 --stage r --runs {fake['out']}")
    # the relaxed skew is MNIST-only (the scripts refuse --p-in for cars): no skewed cars cell
    r = run_all(fake, "--list", "--models", "vae", "--factors", "cars,thin", "--rares", "1",
                "--skew", "0.9,0.1", env={"FAKE_CARS": "1"})
    assert len(r.stdout.splitlines()) == 2 + 2 + 3 and r.stdout.count("--p-in") == 1


# --------------------------------------------------------------------------- bad options
@pytest.mark.parametrize("args, word", [
    (["--models", "vae,bigan"], "bigan"), (["--factors", "blue"], "blue"), (["--rares", "12"], "12"),
    (["--seeds", "0,x"], "x"), (["--lambdas", "0"], "0"), (["--skew", "1.5,0"], "1.5,0"),
    (["--jobs", "0"], "0"), (["--stage", "both"], "both"), (["--frobnicate"], "--frobnicate"), (["--device", "gpu"], "gpu"),
    (["--seeds"], "--seeds"), (["--quick", "--smoke"], "--smoke"), (["--python", "/nope/py"], "/nope/py"),
])
def test_bad_option_is_one_line_and_exit_2(fake, args, word):
    r = run_all(fake, *args)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and word in r.stderr
    assert r.stdout == ""


# --------------------------------------------------------------------------- running
def test_two_cell_grid_runs_then_skips(fake):
    r = run_all(fake, "--smoke", "--models", "vae", "--factors", "colour", "--rares", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert journal(fake, "start") == ["vae/colour-balanced-seed0", "vae/colour-rare1-seed0"]
    assert "smoke" in fake["journal"].read_text()          # the preset reached the script
    res = fake["out"] / "vae" / "colour-rare1-seed0" / "result.json"
    assert json.loads(res.read_text())["cell"] == "vae/colour-rare1-seed0"
    # one status line as each cell starts and ends: [done/total] ... (elapsed ...)
    assert "[0/3] start  oracles/colour" in r.stdout              # the oracles first, then the 2 cells
    assert "[1/3] start  vae/colour-balanced-seed0" in r.stdout
    assert "[3/3] done   vae/colour-rare1-seed0" in r.stdout and "elapsed" in r.stdout
    assert journal(fake, "oracle") == ["oracles/colour"] and "oracles/colour smoke" in fake["journal"].read_text()
    log = fake["results"] / "logs" / "vae" / "colour-rare1-seed0.log"
    assert "fake training vae/colour-rare1-seed0" in log.read_text()
    # the tables come from ztest.py with the result files of the grid
    assert len(journal(fake, "ztest")) == 1
    assert (fake["results"] / "tables.md").read_text() == f"{res}\n"
    assert (fake["results"] / "table1.csv").exists()
    assert r.stdout.rstrip().endswith("Table 1 of the fake")     # the main tables are printed at the end

    # idempotent: a second run skips both cells and starts nothing
    r2 = run_all(fake, "--smoke", "--models", "vae", "--factors", "colour", "--rares", "1")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert r2.stdout.count(" skip ") == 2
    assert len(journal(fake, "start")) == 2 and len(journal(fake, "oracle")) == 2   # (cached: just loaded)
    # --force redoes them, and passes --force to the scripts
    r3 = run_all(fake, "--smoke", "--force", "--models", "vae", "--factors", "colour", "--rares", "1")
    assert r3.returncode == 0 and len(journal(fake, "start")) == 4
    assert fake["journal"].read_text().count(" force") == 2
    # a result made with --smoke is not taken for a paper-scale one: the script is asked, and refuses
    r4 = run_all(fake, "--models", "vae", "--factors", "colour", "--rares", "1")
    assert r4.returncode == 1 and len(journal(fake, "start")) == 5
    assert "vae/colour-rare1-seed0: exit 2: fake: error: result.json was made with other settings" in r4.stdout


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_resume_after_interruption_runs_no_cell_twice(fake, how):
    args = ["--models", "vae", "--factors", "colour,thin", "--rares", "1,2", "--smoke"]  # 2 U + 4 R cells
    cmd = ["bash", str(RUN_ALL), "--python", fake["python"], "--runs", str(fake["out"]),
           "--out-dir", str(fake["results"]), *args]
    env = dict(fake["env"], FAKE_SLEEP="1.2")
    # A shell started in the background (`cmd &`, nohup) ignores SIGINT, and bash cannot trap a signal that
    # was ignored when it started: give run_all.sh the default SIGINT a terminal's foreground job has.
    runner = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while len(journal(fake, "end")) < 2 and time.time() < deadline:   # kill it midway, with a cell running
        time.sleep(0.05)
    while len(journal(fake, "start")) < 3 and time.time() < deadline:
        time.sleep(0.05)
    if how == "ctrl-c":    # SIGINT to the whole foreground process group, as a terminal sends it
        os.killpg(runner.pid, signal.SIGINT)
    else:
        runner.send_signal(signal.SIGTERM)
    out, _ = runner.communicate(timeout=30)
    assert runner.returncode == (130 if how == "ctrl-c" else 143), out
    assert "interrupted" in out
    started = journal(fake, "start")
    ended = journal(fake, "end")
    assert len(ended) == 2 and len(started) == 3
    interrupted = started[2]
    # the interrupted cell's process was stopped with the runner, not left behind
    pid = None
    for line in fake["journal"].read_text().splitlines():
        if line.startswith("start " + interrupted):
            pid = int(line.split()[2])
    time.sleep(0.3)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    r = run_all(fake, *args, env={"FAKE_SLEEP": "0"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(" skip ") == 2
    ended = journal(fake, "end")
    assert sorted(ended) == sorted(set(ended)) and len(ended) == 6      # every cell done exactly once
    started = journal(fake, "start")
    assert started.count(interrupted) == 2                               # only it was started again
    assert len(started) == 7
    results = sorted(p.relative_to(fake["out"]).as_posix() for p in fake["out"].rglob("result.json"))
    assert results == [f"vae/{f}-rare{k}-seed0/result.json" for f in ("colour", "thin") for k in (1, 2)]
    # the per-cell log keeps both attempts of the interrupted cell
    log = (fake["results"] / "logs" / f"{interrupted}.log").read_text()
    assert log.count(f"=== {interrupted} start") == 2


def test_failing_cell_is_reported_and_the_others_go_on(fake):
    r = run_all(fake, "--models", "vae,gan", "--factors", "colour", "--rares", "1,2",
                env={"FAKE_FAIL": "vae/colour-rare2"})
    assert r.returncode == 1
    assert sorted(journal(fake, "end")) == sorted(["vae/colour-balanced-seed0", "gan/colour-balanced-seed0",
                                                   "vae/colour-rare1-seed0", "gan/colour-rare1-seed0",
                                                   "gan/colour-rare2-seed0"])
    summary = r.stdout[r.stdout.index("failed cells"):]
    assert "vae/colour-rare2-seed0" in summary and "exit 3" in summary
    assert "colour-rare1" not in summary
    assert journal(fake, "ztest")        # the tables of the cells that worked are still written


def test_failed_du_model_blocks_its_dr_cells(fake):
    r = run_all(fake, "--models", "vae,gan", "--factors", "colour", "--rares", "1,2",
                env={"FAKE_FAIL": "gan/colour-balanced"})
    assert r.returncode == 1
    assert not any(c.startswith("gan/colour-rare") for c in journal(fake, "start"))
    assert "gan/colour-rare1-seed0 not run: its D_u model gan/colour-balanced-seed0 failed" in r.stdout
    assert len(journal(fake, "end")) == 3


def test_jobs_run_cells_at_once_one_gpu_each(fake):
    r = run_all(fake, "--jobs", "2", "--models", "vae,gan", "--factors", "colour", "--rares", "1",
                env={"FAKE_SLEEP": "1.5", "CUDA_VISIBLE_DEVICES": "3,5"})
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l for l in fake["journal"].read_text().splitlines() if not l.startswith("oracle")]
    # both D_u cells start before either ends, each on its own GPU
    assert [l.split()[0] for l in lines[:2]] == ["start", "start"]
    assert sorted(l.split()[3] for l in lines[:2]) == ["3", "5"]
    assert len(set(journal(fake, "end"))) == 4          # (a D_r cell ends twice when its z-test waits)


def test_pool_trains_a_dr_model_beside_its_du_model_and_tests_it_last(fake):
    """Both cores busy: the longest model first, its D_r cell beside its D_u cell; the D_r cell that
    finished first (no D_u samples yet) runs its z-test in the last pass, counted once."""
    r = run_all(fake, "--jobs", "2", "--models", "vae,ddpm", "--factors", "colour", "--rares", "1",
                env={"FAKE_SLEEP_U": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    starts = journal(fake, "start")
    assert starts[:2] == ["ddpm/colour-balanced-seed0", "ddpm/colour-rare1-seed0"]   # DM before the VAE
    events = [l.split()[:2] for l in fake["journal"].read_text().splitlines() if l.startswith(("start", "end"))]
    assert events.index(["start", "ddpm/colour-rare1-seed0"]) < events.index(["end", "ddpm/colour-balanced-seed0"])
    assert "its z-test once ddpm/colour-balanced-seed0 is done" in r.stdout
    assert (fake["out"] / "ddpm" / "colour-rare1-seed0" / "result.json").exists()
    assert "5/5 cells" in r.stdout and ", 0 failed" in r.stdout


def test_sweep_and_skew_tables_get_their_own_folders(fake):
    res = fake["results"]
    res.mkdir()
    (res / "table3.csv").write_text("stale\n")      # from an earlier, bigger grid: replaced, not kept
    r = run_all(fake, "--models", "gan,gan-sd", "--factors", "colour", "--rares", "1",
                "--lambdas", "0.1,0.8", "--skew", "0.9,0.1")
    assert r.returncode == 0, r.stdout + r.stderr
    rel = lambda d: sorted(Path(l).relative_to(fake["out"]).parent.as_posix()
                           for l in (d / "tables.md").read_text().split())
    assert rel(res) == ["gan-sd/colour-rare1-seed0", "gan/colour-rare1-seed0"]
    assert rel(res / "sd-sweep" / "lambda0.1") == ["gan-sd0.1/colour-rare1-seed0", "gan/colour-rare1-seed0"]
    assert rel(res / "sd-sweep" / "lambda0.8") == ["gan-sd/colour-rare1-seed0", "gan/colour-rare1-seed0"]
    assert rel(res / "skew-pin0.9-pout0.1") == ["gan-sd/colour-rare1-pin0.9-pout0.1-seed0",
                                                "gan/colour-rare1-pin0.9-pout0.1-seed0"]
    assert not (res / "table3.csv").exists()


def test_duplicate_values_are_rejected(fake):
    for args in (["--seeds", "0,0"], ["--lambdas", "0.8,0.80"], ["--factors", "thin,thin"]):
        r = run_all(fake, "--list", *args)
        assert r.returncode == 2 and "appears twice" in r.stderr


# --------------------------------------------------------------------------- with the real scripts
def test_cell_folders_match_the_real_scripts(tmp_path, monkeypatch):
    """Every --list line goes through the real script's main() (its options, presets, run name and
    folders), with only the first shared step it calls, ztest.finished_result, replaced by one that
    writes the cell's output file and ends the run. A second run_all.sh must then find every cell done:
    its idea of where outputs land matches the scripts'."""
    import shlex
    import importlib
    import ztest
    monkeypatch.syspath_prepend(str(ROOT))

    def finished_result(dirs, args, eval_keys=()):
        d = Path(dirs["u" if args.stage == "u" else "r"])
        d.mkdir(parents=True, exist_ok=True)
        if args.stage == "u":
            (d / "samples.npz").write_text("")
        else:   # as ztest writes it: run_all.sh reads the preset (--smoke here) from the config
            data.save_json({"model": d.parent.name, "config": vars(args)}, d / "result.json")
        return {"stub": True}
    monkeypatch.setattr(ztest, "finished_result", finished_result)

    grid = ["--factors", "colour,thin", "--rares", "1", "--lambdas", "0.1,0.8", "--skew", "0.9,0.1",
            "--data-seed", "2", "--oracles", "paper", "--smoke", "--runs", str(tmp_path / "runs"),
            "--out-dir", str(tmp_path / "results")]
    nop = tmp_path / "nop"
    nop.write_text('#!/bin/sh\n[ "$1" = oracles.py ] || [ "$1" = -c ]\n')   # would fail any model cell it ran
    nop.chmod(0o755)
    r = subprocess.run(["bash", str(RUN_ALL), "--python", str(nop), "--list", *grid], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # 2 oracle steps + (vae, gan, gan-sd0.1, gan-sd, ddpm) x 2 factors x (D_u, D_r, skewed D_r)
    assert len(lines) == 2 + 30 and all("oracles.py" in l for l in lines[:2])
    for line in lines[2:]:
        _, script, *argv = shlex.split(line)
        importlib.import_module(script[:-3]).main(argv)
    r = subprocess.run(["bash", str(RUN_ALL), "--python", str(nop), *grid], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1                            # the tables step fails: the outputs are stubs
    assert "32/32 cells" in r.stdout and "2 ran, 30 skipped" in r.stdout and ", 0 failed" in r.stdout


def test_real_scripts_smoke_grid(tmp_path, mnist_root, cache_dir):
    """The real vae.py and ztest.py on the offline fixture (or real MNIST with --smoke's subset)."""
    args = ["bash", str(RUN_ALL), "--smoke", "--models", "vae", "--factors", "colour", "--rares", "1",
            "--data-root", mnist_root, "--cache-dir", cache_dir,
            "--runs", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "results")]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((tmp_path / "runs" / "vae" / "colour-rare1-seed0" / "result.json").read_text())
    assert res["model"] == "VAE" and res["rare"] == 1 and res["config"]["smoke"] is True
    md = (tmp_path / "results" / "tables.md").read_text()
    assert "Table 1" in md and "colour (VAE" in md and "VAE-mix" in md and "Table 4" in md     # both priors
    assert (tmp_path / "runs" / "vae-mix" / "colour-rare1-seed0" / "result.json").exists()
    assert (tmp_path / "results" / "table1.csv").exists() and (tmp_path / "results" / "tables.tex").exists()
    assert "oracles: mnist colour" in (tmp_path / "results" / "logs" / "oracles" / "colour.log").read_text()


def test_stage_r_without_du_models_says_so(fake):
    r = run_all(fake, "--stage", "r", "--models", "vae", "--factors", "colour", "--rares", "1")
    assert r.returncode == 1
    assert "no D_u model vae/colour-balanced-seed0 yet" in r.stdout
    r = run_all(fake, "--stage", "u", "--models", "vae", "--factors", "colour", "--rares", "1")
    assert r.returncode == 0 and journal(fake, "start")[-1] == "vae/colour-balanced-seed0"
    assert not journal(fake, "ztest")                   # --stage u: no D_r results, no tables
    r = run_all(fake, "--models", "vae", "--factors", "colour", "--rares", "1")
    assert r.returncode == 0 and "2 ran, 1 skipped" in r.stdout       # the oracle step and the D_r cell


def test_failing_tables_step_is_reported(fake):
    r = run_all(fake, "--models", "vae", "--factors", "colour", "--rares", "1", env={"FAKE_ZTEST_FAIL": "1"})
    assert r.returncode == 1 and "ztest.py FAILED" in r.stdout
    assert "ztest.py: error: broken" in (fake["results"] / "ztest.log").read_text()
    assert not (fake["results"] / ".tables.tmp").exists() and not (fake["results"] / "tables.md").exists()


def test_min_n_and_summary_reach_the_scripts_and_the_tables(fake):
    r = run_all(fake, "--list", "--models", "vae", "--factors", "colour", "--rares", "1", "--min-n", "0")
    assert r.returncode == 0 and all("--min-n 0" in line for line in r.stdout.splitlines()[1:])
    r = run_all(fake, "--models", "vae", "--factors", "colour", "--rares", "1", "--min-n", "10", "--summary", "paper")
    assert r.returncode == 0, r.stdout + r.stderr
    argv = (fake["results"] / "argv.txt").read_text()
    assert "--min-n 10" in argv and "--summary paper" in argv
    for bad, words in ((["--min-n", "-1"], "--min-n '-1'"), (["--min-n", "x"], "--min-n 'x'"),
                       (["--summary", "bogus"], "--summary 'bogus'")):
        r = run_all(fake, "--list", *bad)
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1
    for every in ("calibrated", "morphometric", "answer"):      # every reading ztest.py renders is accepted
        assert run_all(fake, "--list", "--summary", every).returncode == 0
