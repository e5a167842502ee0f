"""The CPU presets a result was made with, and whether its models fit their data.

A verdict on the rare digit asks whether the D_r model kept the factor on it (M) or spread it (L); it has
no answer when the D_r model did not draw its rare digit with the factor in the first place (it
underfitted: docs/readings.md, "u"). `fit_check` reads a result's fit and baseline the way
docs/BENCHMARKS.md's issue-29 table does:
  fit      the rare digit's fit on D_r >= FIT_MIN: the morphometric fit on a stroke factor (0 = real plain
           digits, 1 = real factor-bearing ones), the factor oracle's P_r on colour;
  baseline the D_u model draws the rare digit with the factor about half the time (|P_u - 0.5| <=
           BASELINE_DEV, P_u read by the factor oracle on the readable samples) and every digit
           >= MIN_PER_1000 times per 1,000 readable samples;
  readable the label oracle reads >= READABLE_MIN of each model's samples with p > 0.9.
`preset` names the preset a result's config matches (PRESETS: each version's defining options), so
that committed results say which models made them.

    python -m study.presets results/quick           # one row per D_r cell: preset, fit, baseline
    python -m study.presets results/quick --write   # ... also written to results/quick/presets.md
"""
import argparse
import glob
import json
import math
import os
import sys

FIT_MIN, BASELINE_DEV, MIN_PER_1000 = 0.8, 0.2, 50
READABLE_MIN = {"vae": 0.45, "default": 0.60}   # run names starting with "vae": the VAE's blur reads less
# Each model's CPU presets in the order they were introduced: (label, the options that define it, what it is).
# An option an older config lacks reads as OLD_DEFAULTS gives it.
PRESETS = {
    "vae": [("quick/1", {"quick": True, "epochs": 7, "latent": 20, "width": 32, "prior": "normal"},
             "7 epochs; z ~ N(0, I)"),
            ("quick/2", {"quick": True, "epochs": 7, "latent": 20, "width": 32, "prior": "gmm", "components": 100},
             "7 epochs; z from a 100-component Gaussian mixture fitted to the encoded training set")],
    "gan": [("quick/1", {"quick": True, "epochs": 10, "width": 32, "pack": 2, "subset": 0},
             "10 epochs of all 58,000 digits, packed D (PacGAN2)")],
    "ddpm": [("quick/1", {"quick": True, "epochs": 8, "subset": 20000, "width": 32, "res_blocks": 1, "patch": 2,
                          "sample_steps": 25}, "8 epochs of 20,000 digits, width 32, DDIM 25 steps"),
             ("cpu-full/1", {"cpu_full": True, "epochs": 40, "subset": 20000, "width": 32, "res_blocks": 1,
                             "patch": 2, "sample_steps": 25}, "quick/1 for 40 epochs"),
             ("cpu-full/2", {"cpu_full": True, "epochs": 40, "subset": 20000, "width": 24, "res_blocks": 1,
                             "patch": 2, "sample_steps": 25}, "cpu-full/1 at width 24 (0.75x the time): a candidate, not --cpu-full")],
}
PRESETS["vae"].append(("cpu-full/1", {**PRESETS["vae"][-1][1], "quick": False, "cpu_full": True},
                       "quick/2: the VAE fits its data at --quick's length"))
PRESETS["vae"].append(("cpu-full/2", {**PRESETS["vae"][0][1], "quick": False, "cpu_full": True},
                       "quick/1 (z ~ N(0, I), the paper's VAE); the same models' mixture samples (VAE-mix) read "
                       "as cpu-full/1"))
PRESETS["gan"].append(("cpu-full/1", {**PRESETS["gan"][-1][1], "quick": False, "cpu_full": True},
                       "quick/1: no longer GAN preset yet (its curve: docs/BENCHMARKS.md)"))
PRESETS["gan"].append(("cpu-full/2", {**PRESETS["gan"][0][1], "quick": False, "cpu_full": True, "epochs": 35,
                                      "lr": 4e-4}, "quick/1 at twice the rate (4e-4) for 35 epochs"))
PRESETS["gan"].append(("cpu-full/3", {**PRESETS["gan"][-1][1], "epochs": 45}, "cpu-full/2 for 45 epochs"))
OLD_DEFAULTS = {"prior": "normal"}


def _family(run_name):
    return next((k for k in PRESETS if run_name == k or run_name.startswith(k + "-")), None)


def preset(res):
    """The label of the preset `res` (a result.json dict) was made with: "quick/N" or "cpu-full/N", with a
    "+" when it changes a non-defining option (GAN-SD, a beta-VAE), "paper" without --quick or --cpu-full,
    "custom" when a defining option differs from every version."""
    cfg = {**OLD_DEFAULTS, **res.get("config", {})}
    if cfg.get("smoke"):
        return "smoke"
    if not (cfg.get("quick") or cfg.get("cpu_full")):
        return "paper"
    fam = _family(res.get("run_name", res.get("model", "")).lower())
    for label, opts, _ in reversed(PRESETS.get(fam, [])):
        if all(cfg.get(k) == v for k, v in opts.items()):
            return label if res.get("run_name") in (fam, fam + "-mix") else label + "+"   # -mix: resampled
    return "custom"


def _fit(res):
    """(fit_u, fit_r, what measured them) of the rare digit; None where unmeasured (an older stroke result
    without the morphometric reading)."""
    from study import morphometry, quality
    fit = res.get("quality", {}).get("fit")
    if fit is None and res.get("morphometric"):
        fit = morphometry.fit_tie(res["morphometric"], res["rare"])
    if fit is None and res.get("factor") == "colour" and "readable" in res:
        fit = quality.oracle_fit(res["readable"], res["rare"])
    return (fit["fit_u"], fit["fit_r"], fit["measure"]) if fit else (None, None, None)


def fit_check(res):
    """The issue-29 reading of one D_r result: {"preset", "fit_u", "fit_r", "measure", "p_u", "min_per_1000",
    "readable_u", "readable_r", "fits", "baseline", "readable", "ok"}; a check is None when unmeasured."""
    fit_u, fit_r, measure = _fit(res)
    rare, q = res["rare"], res.get("quality", {})
    rd = res["readable"]["u"]["0.9"] if "readable" in res else None
    p_u = rd["k"][rare] / rd["n"][rare] if rd and rd["n"][rare] else None
    hist = {w: q.get(w, {}).get("histogram") for w in ("u", "r")}
    per = {w: min(h) * 1000 / sum(h) if h and sum(h) else None for w, h in hist.items()}
    share = {w: q.get(w, {}).get("confident") for w in ("u", "r")}
    need = READABLE_MIN.get(_family(res.get("run_name", "")), READABLE_MIN["default"])
    out = {"preset": preset(res), "fit_u": fit_u, "fit_r": fit_r, "measure": measure, "p_u": p_u,
           "min_per_1000": None if None in per.values() else min(per.values()),
           "readable_u": share["u"], "readable_r": share["r"], "readable_min": need}
    out["fits"] = None if fit_r is None else fit_r >= FIT_MIN
    out["baseline"] = (None if p_u is None or out["min_per_1000"] is None else
                       abs(p_u - 0.5) <= BASELINE_DEV and out["min_per_1000"] >= MIN_PER_1000)
    out["readable"] = None if None in share.values() else min(share.values()) >= need
    checks = [out[k] for k in ("fits", "baseline", "readable")]
    out["ok"] = False if False in checks else (None if None in checks else True)   # one miss decides
    return out


def _num(v, fmt="{:.2f}"):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _yes(v):
    return "-" if v is None else ("yes" if v else "**no**")


def table(folder):
    """Markdown: one row per D_r result.json under folder/<run>/<cell>/, its preset and fit_check."""
    rows = ["| run | cell | preset | fit D_u | fit D_r (>= 0.8) | measured by | P_u (0.3-0.7) | min digit / 1000 "
            "(>= 50) | readable D_u / D_r | all checks |", "|" + "---|" * 10]
    for path in sorted(glob.glob(os.path.join(folder, "*", "*", "result.json"))):
        with open(path) as fh:
            res = json.load(fh)
        c = fit_check(res)
        rd = f"{_num(c['readable_u'], '{:.0%}')} / {_num(c['readable_r'], '{:.0%}')} (>= {c['readable_min']:.0%})"
        run, cell = path.split(os.sep)[-3:-1]
        rows.append(f"| {run} | {cell} | {c['preset']} | {_num(c['fit_u'])} | {_num(c['fit_r'])} | "
                    f"{c['measure'] or 'not measured'} | {_num(c['p_u'])} | {_num(c['min_per_1000'], '{:.0f}')} | "
                    f"{rd} | {_yes(c['ok'])} |")
    return "\n".join(rows) + "\n"


def main(argv=None):
    from study.runs import atomic_write, output_problem
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a results folder with <run>/<cell>/result.json (e.g. results/quick)")
    p.add_argument("--write", action="store_true", help="also write FOLDER/presets.md (default: print only)")

    def error(msg):                              # argparse's errors too: one line, exit 2
        print(f"presets: error: {msg}", file=sys.stderr)
        sys.exit(2)
    p.error = error
    a = p.parse_args(argv)
    if not glob.glob(os.path.join(a.folder, "*", "*", "result.json")):
        print(f"presets: {a.folder!r} holds no <run>/<cell>/result.json; accepted: a results folder such as "
              f"results/quick", file=sys.stderr)
        return 2
    if a.write and output_problem("--write into", a.folder):      # before any work
        error(output_problem("--write into", a.folder))
    defs = "\n".join(f"| {fam} | {label} | {what} |" for fam, v in PRESETS.items() for label, _, what in v)
    text = ("# The presets of these results, and whether their models fit their data\n\n"
            f"`python -m study.presets {a.folder} --write` (study/presets.py: the checks and the presets' "
            f"definitions).\n\n| model | preset | what it is |\n|---|---|---|\n{defs}\n\n" + table(a.folder))
    print(text, end="")
    if a.write:
        atomic_write(os.path.join(a.folder, "presets.md"), lambda fh: fh.write(text.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
