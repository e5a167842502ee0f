"""The run steps that vae.py, gan.py and ddpm.py share (section 4 of the paper): options and presets,
run folders, the Checkpoint object (RNG states and resume, --force, finished cells, the NaN stop), the
shared D_u model, refused settings, atomic files, and ztest.evaluate. A tiny model script, written here
the way the three model scripts are written, drives them; data and oracles are small fakes, so every
test takes seconds.

    python -m pytest -q tests/test_protocol.py
"""
import fcntl
import json
import os
import stat
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

import data
from study import calibration
import ztest


# --------------------------------------------------------------------------- a tiny model script
class Tiny(nn.Module):
    """A 'generator' that is one learned mean image plus Gaussian noise."""
    def __init__(self, shape):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(shape))


CALLS = {"train": 0, "crash_at": 0, "nan_at": 0}     # set by run(); not options, so not part of a model's identity


def train_epoch(m, opt, x, epoch, args, gen):
    CALLS["train"] += 1
    if epoch + 1 == CALLS["crash_at"]:
        raise KeyboardInterrupt            # an interruption in the middle of training
    total, steps = 0.0, 0
    for idx in data.progress(torch.randperm(len(x), generator=gen, device=x.device).split(args.batch_size)):
        noise = torch.randn(x[idx].shape, generator=gen, device=x.device)
        loss = ((m.mu + 0.1 * noise - x[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        total, steps = total + loss.item() * len(idx), steps + 1
    return {"loss": float("nan") if epoch + 1 == CALLS["nan_at"] else total / len(x)}, steps


def train(which, args, dirs, device, started):
    ck = data.Checkpoint(dirs[which], args, which, device, started)
    if (s := ck.finished_samples()) is not None:
        return s, ck.history, {}
    gen = data.set_seed(args.seed, device)
    m = Tiny(data.image_shape(args)).to(device)
    with torch.no_grad():
        m.mu.uniform_(0, 1, generator=gen)
    opt = torch.optim.SGD(m.parameters(), lr=args.lr, momentum=0.9)
    ck.restore({"g": m, "opt": opt}, gen)
    steps, timings = ck.extra or 0, {}
    if ck.epoch < args.epochs:
        x, _, _ = data.load_split(args, which, device)
        x_val = data.load_split(args, "val", device)[0]
        ck.begin(len(x))
        t0 = time.time()
        for epoch in range(ck.epoch, args.epochs):
            losses, n = train_epoch(m, opt, x, epoch, args, gen)
            steps += n
            row = {"epoch": epoch + 1, **losses, "val_mean": float(x_val.mean()), "seconds": 0.0}
            ck.save({"g": m, "opt": opt}, gen, row, extra=steps)     # NaN stop, ckpt.pt, history.csv
        timings["train"] = time.time() - t0
    with torch.no_grad():
        g = data.sampling_generator(args.seed, device)
        x = m.mu + 0.3 * torch.randn((args.samples,) + tuple(m.mu.shape), generator=g)
    timings["sample"] = 0.0
    return ck.save_samples((x.clamp(0, 1) * 255).round().to(torch.uint8)), ck.history, timings


def main(args):
    dirs, device = data.run_dirs(args, "tiny"), data.pick_device(args.device)
    if (res := ztest.finished_result(dirs, args)) is not None:
        return res
    runs = {which: train(which, args, dirs, device, time.time()) for which in data.stages(args)}
    return ztest.evaluate(args, "Tiny", "tiny", dirs, runs, device)


# --------------------------------------------------------------------------- fakes: data and oracles
def fake_dataset(factor, split="train", rare=None, p_in=1.0, p_out=0.0, seed=0, root=None, cache_dir=None,
                 limit=None):
    """200 images; the factor is the colour channel (red f=0, green f=1), the label a brightness level.
    The test split holds 100 digits twice, without and then with the factor, as data.make_dataset's."""
    rng = np.random.default_rng([seed, {"train": int(rare is not None), "val": 2, "test": 3}[split]])
    y = np.arange(200) % 10
    f = (y == rare).astype(np.int64) if rare is not None else (np.arange(200) // 10) % 2
    if split == "test":
        f = np.repeat([0, 1], 100)
    x = np.zeros((200, 3, 28, 28), np.uint8)
    x[np.arange(200), f] = (rng.random((200, 28, 28)) * 25 * (y[:, None, None] + 1)).astype(np.uint8)
    return x, y, f


def fake_classify(orc, x):
    x = np.asarray(x).astype(float)
    f = (x[:, 1].mean((1, 2)) > x[:, 0].mean((1, 2))).astype(np.int64)
    return x.sum((1, 2, 3)).astype(np.int64) % 10, f


def fake_predict_proba(orc, x):
    """Probabilities that agree with fake_classify: 0.95 on its label for even labels, 0.5 for odd."""
    y, f = fake_classify(orc, x)
    p = np.full((len(y), 10), 0.0)
    p[np.arange(len(y)), y] = np.where(y % 2 == 0, 0.95, 0.5)
    return p, f.astype(float)


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(ztest.oracles, "load_oracles", lambda *a, **k: {"acc": {"label": 0.99, "factor": 0.995},
                                                                       "target": 0.98})
    monkeypatch.setattr(ztest.oracles, "classify", fake_classify)
    monkeypatch.setattr(ztest.oracles, "predict_proba", fake_predict_proba)
    monkeypatch.setattr(ztest.oracles, "features", lambda orc, x: np.asarray(x, float).reshape(len(x), 3, -1).mean(2))
    monkeypatch.setattr(data, "make_dataset", fake_dataset)
    CALLS["train"] = 0


def parse(argv, tmp_path):
    p = data.common_parser(__doc__, epochs=4, batch_size=32, lr=0.5)
    return data.parse_args(p, ["--runs", str(tmp_path), "--device", "cpu", "--samples", "60"] + argv,
                           presets={"smoke": {"epochs": 1}})


def run(argv, tmp_path, crash_at=0, nan_at=0):
    CALLS.update(crash_at=crash_at, nan_at=nan_at)
    return main(parse(argv, tmp_path))


def stable(res):
    """A result without the wall-clock and path fields that legitimately differ between two runs."""
    return {"counts": res["counts"], "rows": json.loads(json.dumps(data.json_safe(res["rows"]))),
            "history": {w: [{k: v for k, v in h.items() if k != "seconds"} for h in hs]
                        for w, hs in res["history"].items()}}


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("crash", ["2", "4"])
@pytest.mark.parametrize("stage_of_crash", ["u", "r"])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(fakes, tmp_path, crash, stage_of_crash):
    full = run([], tmp_path / "a")
    if stage_of_crash == "u":
        with pytest.raises(KeyboardInterrupt):
            run([], tmp_path / "b", crash_at=int(crash))
        assert not os.path.exists(tmp_path / "b/tiny/colour-rare1-seed0/ckpt.pt")
    else:   # D_u finished, D_r interrupted
        run(["--stage", "u"], tmp_path / "b")
        with pytest.raises(KeyboardInterrupt):
            run([], tmp_path / "b", crash_at=int(crash))
    ck = torch.load(tmp_path / "b/tiny" / ("colour-balanced-seed0" if stage_of_crash == "u" else
                                           "colour-rare1-seed0") / "ckpt.pt", weights_only=False)
    assert ck["epoch"] == int(crash) - 1 and len(ck["history"]) == int(crash) - 1
    resumed = run([], tmp_path / "b")
    assert stable(resumed) == stable(full)
    for cell in ("colour-balanced-seed0", "colour-rare1-seed0"):
        a = np.load(tmp_path / "a/tiny" / cell / "samples.npz")["x"]
        b = np.load(tmp_path / "b/tiny" / cell / "samples.npz")["x"]
        assert np.array_equal(a, b)
        ca = torch.load(tmp_path / "a/tiny" / cell / "ckpt.pt", weights_only=False)
        cb = torch.load(tmp_path / "b/tiny" / cell / "ckpt.pt", weights_only=False)
        assert torch.equal(ca["state"]["g"]["mu"], cb["state"]["g"]["mu"])
        assert ca["extra"] == cb["extra"] == 4 * 7
        assert [h["epoch"] for h in cb["history"]] == [1, 2, 3, 4]


def test_outputs_of_a_cell(fakes, tmp_path):
    res = run([], tmp_path)
    cell = tmp_path / "tiny/colour-rare1-seed0"
    for f in ("ckpt.pt", "samples.npz", "samples.png", "history.csv", "result.json", "config.json"):
        assert (cell / f).exists() and (tmp_path / "tiny/colour-balanced-seed0/samples.png").exists()
    saved = json.loads((cell / "result.json").read_text())
    assert saved["model"] == "Tiny" and saved["seed"] == 0 and saved["config"]["epochs"] == 4
    assert sum(saved["counts"]["r"]["n"]) == 60 == saved["rows"][-1]["n_r"]
    assert [r["name"] for r in saved["rows"]] == [str(d) for d in range(10)] + ["Total"]
    assert saved["oracle_acc"] == {"label": 0.99, "factor": 0.995} and saved["device"] == "cpu"
    assert {"train_u", "train_r", "sample_u", "classify"} <= set(saved["timings"])
    q, (y, _) = saved["quality"], fake_classify(None, np.load(cell / "samples.npz")["x"])
    assert q["r"]["confident"] == pytest.approx(np.mean(y % 2 == 0)) and q["r"]["histogram"] == saved["counts"]["r"]["n"]
    assert res["rows"][-1]["verdict"] in "LM?-"
    assert [h["val_mean"] > 0 for h in saved["history"]["u"]] == [True] * 4
    ck = torch.load(cell / "ckpt.pt", weights_only=False)
    assert set(ck) >= {"state", "epoch", "rng", "config", "history"} and set(ck["state"]) == {"g", "opt"}
    assert set(ck["rng"]) >= {"gen", "torch", "numpy", "python"}
    assert not [f for f in os.listdir(cell) if f.startswith(".tmp-")]     # atomic writes leave no temp files


def test_finished_cell_is_not_retrained_and_force_retrains(fakes, tmp_path, capsys):
    first = run([], tmp_path)
    assert CALLS["train"] == 8
    again = run([], tmp_path)
    assert CALLS["train"] == 8 and "already done" in capsys.readouterr().out
    assert stable(again) == stable(first)
    forced = run(["--force"], tmp_path)
    assert CALLS["train"] == 16                       # both models trained again from scratch
    assert stable(forced) == stable(first)            # ... and, on the CPU, to the same numbers


def test_d_u_is_shared_by_every_rare_digit(fakes, tmp_path):
    run(["--rare", "1"], tmp_path)
    res2 = run(["--rare", "2"], tmp_path)
    assert CALLS["train"] == 4 + 4 + 4                # D_u once, D_r for digit 1 and for digit 2
    assert sorted(os.listdir(tmp_path / "tiny")) == ["colour-balanced-seed0", "colour-rare1-seed0",
                                                      "colour-rare2-seed0"]
    assert res2["rare"] == 2 and res2["dirs"]["u"].endswith("colour-balanced-seed0")


def test_skew_and_data_seed_in_the_folder_name(fakes, tmp_path):
    run(["--p-in", "0.9", "--p-out", "0.1", "--data-seed", "3", "--epochs", "1"], tmp_path)
    assert sorted(os.listdir(tmp_path / "tiny")) == ["colour-balanced-ds3-seed0", "colour-rare1-pin0.9-pout0.1-ds3-seed0"]


def test_stages(fakes, tmp_path):
    assert run(["--stage", "u", "--epochs", "1"], tmp_path) is None
    assert CALLS["train"] == 1 and not (tmp_path / "tiny/colour-rare1-seed0").exists()
    du = json.loads((tmp_path / "tiny/colour-balanced-seed0/du.json").read_text())   # the null check's input
    res = run(["--stage", "r", "--epochs", "1"], tmp_path)
    assert CALLS["train"] == 2 and res["rows"][-1]["n_r"] == 60
    assert du["format"] == "rgf-du/1" and du["counts"]["u"] == res["counts"]["u"]
    assert du["readable"]["u"] == res["readable"]["u"] and (du["seed"], du["run_name"]) == (0, "tiny")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(fakes, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run([], tmp_path, nan_at=3)
    assert e.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]   # (tqdm bars aside)
    assert len(err) == 1 and "non-finite loss in epoch 3" in err[0] and "loss=nan" in err[0]
    ck = torch.load(tmp_path / "tiny/colour-balanced-seed0/ckpt.pt", weights_only=False)
    assert ck["epoch"] == 2 and torch.isfinite(ck["state"]["g"]["mu"]).all()


def test_changed_settings_are_refused_not_mixed(fakes, tmp_path, capsys):
    run(["--epochs", "2"], tmp_path)
    with pytest.raises(SystemExit) as e:
        run(["--epochs", "3"], tmp_path)
    assert e.value.code == 2 and "epochs=2 (now 3)" in capsys.readouterr().err
    assert run(["--epochs", "3", "--force"], tmp_path)["history"]["r"][-1]["epoch"] == 3


def test_presets_fill_only_options_not_given(tmp_path):
    a = parse(["--smoke"], tmp_path)
    assert a.epochs == 1 and a.subset == 300 and a.samples == 60        # --samples was given explicitly
    b = parse(["--smoke", "--epochs", "3", "--subset", "0"], tmp_path)
    assert b.epochs == 3 and b.subset == 0
    assert parse([], tmp_path).epochs == 4
    c = parse(["--dataset", "cars"], tmp_path)
    assert c.rare == 0 and c.factor == "colour"


def test_cpu_full_is_quick_then_its_own_options_and_not_part_of_a_models_identity(tmp_path):
    """--cpu-full applies the --quick preset, then the model's own cpu_full entries over it (ddpm.py: the
    quick DM, 40 epochs); the flag itself is not part of a checkpoint's identity, the options it sets are."""
    import ddpm
    from study import runs
    quick = data.parse_args(ddpm.build_parser(), ["--quick"], presets=ddpm.PRESETS, check=ddpm.check)
    full = data.parse_args(ddpm.build_parser(), ["--cpu-full"], presets=ddpm.PRESETS, check=ddpm.check)
    mine = data.parse_args(ddpm.build_parser(), ["--cpu-full", "--epochs", "3"], presets=ddpm.PRESETS, check=ddpm.check)
    assert (quick.epochs, full.epochs, mine.epochs) == (8, 40, 3)
    assert {k: v for k, v in vars(full).items() if k not in ("epochs", "quick", "cpu_full")} == \
        {k: v for k, v in vars(quick).items() if k not in ("epochs", "quick", "cpu_full")}
    ident = runs.identity(full, "r")
    assert "cpu_full" not in ident and ident["epochs"] == 40
    import gan                                                      # the GAN's: 45 epochs at twice the rate
    g = data.parse_args(gan.build_parser(), ["--cpu-full"], presets=gan.PRESETS, check=gan.check)
    assert (g.epochs, g.lr, g.sd_epochs, g.samples) == (45, 4e-4, 18, 10000)


@pytest.mark.parametrize("argv, words", [
    (["--quick", "--cpu-full"], "--cpu-full"), (["--samples", "0"], "--samples 0"), (["--rare", "12"], "--rare 12"), (["--factor", "bogus"], "bogus"),
    (["--p-in", "1.5"], "--p-in 1.5"), (["--device", "tpu"], "tpu"), (["--device", "cuda:7"], "cuda:7"),
    (["--quick", "--smoke"], "--smoke"), (["--dataset", "cars", "--rare", "1"], "--rare 1"),
    (["--lr", "-1"], "--lr -1"), (["--epochs", "zero"], "zero"), (["--dataset", "cars", "--factor", "thin"], "thin")])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as e:
        parse(argv, tmp_path)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and words in err and "Traceback" not in err


def test_model_check_error(tmp_path, capsys):
    p = data.common_parser("", epochs=1, batch_size=1, lr=1)
    p.add_argument("--beta", type=float, default=1.0, help="(default: 1)")
    check = lambda a: None if a.beta > 0 else f"--beta must be > 0 (got {a.beta:g})"
    assert data.parse_args(p, ["--beta", "2"], check=check).beta == 2
    with pytest.raises(SystemExit) as e:
        data.parse_args(p, ["--beta", "-1"], check=check)
    assert e.value.code == 2 and capsys.readouterr().err.strip().endswith("--beta must be > 0 (got -1)")


def test_helpers(tmp_path):
    assert data.pick_device("cpu", announce=False) == torch.device("cpu")
    assert data.amp_dtype("cpu") is None
    with data.autocast(torch.device("cpu")):           # a no-op on the CPU: float32 stays float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    g = data.set_seed(5)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    lock = tmp_path / "x.lock"
    with data.file_lock(lock):                        # a second holder is refused while the first holds it
        with open(lock) as fh, pytest.raises(BlockingIOError):
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not lock.exists()                            # released afterwards, and its file removed
    with pytest.raises(ZeroDivisionError):              # a failed write leaves the old file and no temp file
        data.save_json({"a": 1}, tmp_path / "r.json")
        data.atomic_write(tmp_path / "r.json", lambda fh: 1 / 0)
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["r.json"]                   # no temp file, and the lock file removed
    data.save_json({"z": float("nan")}, tmp_path / "n.json")      # NaN -> null, standard JSON
    assert json.loads((tmp_path / "n.json").read_text()) == {"z": None}


def test_end_to_end_with_data_py_and_smoke_oracles(small_mnist_root, cache_dir, tmp_path):
    """The real data.make_dataset (first 300 fixture digits) and the smoke oracles, with the tiny model."""
    args = parse(["--smoke", "--data-root", small_mnist_root, "--cache-dir", cache_dir, "--samples", "50"], tmp_path)
    res = main(args)
    assert res["oracle_smoke"] and res["rows"][-1]["n_u"] == res["rows"][-1]["n_r"] == 50
    assert res["history"]["u"][0]["val_mean"] > 0          # the balanced validation digits were loaded
    saved = json.loads((tmp_path / "tiny/colour-rare1-seed0/config.json").read_text())
    assert saved["images"] == 270 and saved["config"]["subset"] == 300   # 300 digits minus the 10% hold-out


def test_a_stroke_run_saves_the_calibrated_and_the_morphometric_readings(small_mnist_root, cache_dir, tmp_path):
    """A new run's result.json carries what the calibrated and the morphometric readings need: the tau^2
    it was read with, the morphometric counts, measures and ends, and the rare digit's fit in the
    quality report; its rows carry both readings. A --stage u run keeps its D_u half's morphometric
    counts in du.json, equal to the result's D_u half."""
    common = ["--smoke", "--factor", "thick", "--data-root", small_mnist_root, "--cache-dir", cache_dir, "--samples", "50"]
    main(parse(common + ["--stage", "u"], tmp_path))          # du.json: the morphometric null check's D_u half
    du = json.loads((tmp_path / "tiny/thick-balanced-seed0/du.json").read_text())
    assert set(du["morphometric"]["counts"]) == {"u"} and set(du["morphometric"]["measures"]) == {"u"}
    main(parse(common + ["--stage", "r"], tmp_path))
    res = json.loads((tmp_path / "tiny/thick-rare1-seed0/result.json").read_text())
    assert du["morphometric"]["counts"]["u"] == res["morphometric"]["counts"]["u"]
    assert calibration.du_tables([du])[("tiny", "thick", 0, 0)]["morph_nk"] == (
        res["morphometric"]["counts"]["u"]["n"], res["morphometric"]["counts"]["u"]["k"])
    assert res["tau2"] == ztest.readings.TAU2
    morph = res["morphometric"]
    assert morph["format"] == "rgf-morpho/1" and morph["main"] == "thickness" and morph["rare"] == 1
    assert set(morph["counts"]) == {"u", "r"} and len(morph["ends"]["plain"]["mean"]) == 10
    assert {"fit_u", "fit_r", "tie", "measure"} <= set(res["quality"]["fit"])
    rows = ztest.result_rows(res)
    assert all("verdict_cal" in r and "verdict_morph" in r for r in rows)


def test_written_files_have_the_usual_permissions(fakes, tmp_path):
    """Results are shared on clusters: every file the atomic writer makes gets 0666 less the umask (here
    0o022 -> 0644, readable by the group and others), not the 0600 of a temp file."""
    old = os.umask(0o022)
    try:
        run(["--epochs", "1"], tmp_path)
        data.save_json({"a": 1}, tmp_path / "x.json")
        os.umask(0o027)
        data.save_text("t", tmp_path / "y.txt")
    finally:
        os.umask(old)
    cell = tmp_path / "tiny/colour-rare1-seed0"
    for f in ("result.json", "samples.npz", "samples.png", "config.json", "ckpt.pt", "history.csv"):
        assert stat.S_IMODE((cell / f).stat().st_mode) == 0o644, f
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "y.txt").stat().st_mode) == 0o640


def test_min_n_reaches_the_printed_table_and_is_not_part_of_the_model(fakes, tmp_path, capsys):
    """60 samples over 10 classes: every class has fewer than 30, so each gets "n" (too few samples),
    never L; --min-n 0 is the paper's rule. Changing it only re-reads a finished cell."""
    res = run(["--epochs", "1"], tmp_path)
    assert res["min_n"] == 30 and {r["verdict"] for r in res["rows"][:-1]} == {"n"}
    assert res["rows"][-1]["verdict"] != "n"                         # Total: all 60 samples
    capsys.readouterr()
    again = run(["--epochs", "1", "--min-n", "0"], tmp_path)        # not refused: min-n is no model setting
    out = capsys.readouterr().out
    assert "already done" in out and CALLS["train"] == 2
    table = out[out.index("class"):]
    assert " n " not in table and again["counts"] == res["counts"]
    with pytest.raises(SystemExit) as e:
        run(["--min-n", "-1"], tmp_path)
    assert e.value.code == 2 and "--min-n -1" in capsys.readouterr().err
