"""The command-line plumbing the scripts share: options renamed in this release, and the options a user
set explicitly (the --quick / --smoke presets fill only the others).

One name per concept across data.py, the model scripts, oracles.py, ztest.py and run_all.sh:

    --data-seed N        the data seed (the factor assignment of D_u / D_r, the oracles' data)
    --seed N             the training and sampling seed of a model (run_all.sh: --seeds LIST)
    --oracles R          the oracles' training recipe, robust or paper
    --stage {all,u,r}    which models a run trains
    --runs DIR           the runs folder: where the model scripts write, where ztest.py finds samples
    --out-dir DIR        where tables, figures and files are written

An old name keeps working for one release: it is replaced by the new one before parsing, with a
one-line notice on stderr, and never means something else. An option that a command line does not have
but that names a concept it calls otherwise (--out-dir on a model script, --runs-dir on ztest.py) is
refused with one line that gives the right name (the *_SIBLINGS tables, parse).
"""
import argparse
import os
import sys

# {old option: new option} and {(option, old value): new value}, per script
MODEL_RENAMES = {"--out": "--runs"}, {("--stage", "both"): "all"}
DATA_RENAMES = {"--seed": "--data-seed"}, {}
ORACLE_RENAMES = {"--recipe": "--oracles"}, {}

# Options a script does not have that name a sibling concept: {wrong option: where that concept is}, per
# script. argparse alone says "unrecognized arguments"; these say which option is meant.
_WRITES_RUNS = "the model scripts write under --runs DIR (default: runs)"
_DATA_ROOT = "MNIST's folder is --data-root DIR"
_ORACLES = "the oracles' recipe is --oracles robust|paper"
MODEL_SIBLINGS = {**dict.fromkeys(("--out-dir", "--outdir", "--output", "--output-dir", "--results"), _WRITES_RUNS),
                  **dict.fromkeys(("--runs-dir", "--run-dir", "--runs-folder"), "the runs folder is --runs DIR"),
                  "--data-dir": _DATA_ROOT, "--recipe": _ORACLES}
_ZTEST_WRITES = "ztest.py writes its tables under --out-dir DIR, its figures under --figures DIR and an audit's " \
                "result as --save FILE"
ZTEST_SIBLINGS = {**dict.fromkeys(("--output", "--outdir", "--output-dir", "--tables"), _ZTEST_WRITES),
                  **dict.fromkeys(("--runs-dir", "--run-dir", "--runs-folder"),
                                  "--runs DIR is the runs folder the model scripts wrote, an input (the samples "
                                  "of --figures); result files and folders are its arguments"),
                  "--results": "result.json files and folders are its arguments: ztest.py RESULTS... "
                               "(e.g. ztest.py results/quick)",
                  "--seed": "the seeds come from the result files; the oracles' data seed is --data-seed N",
                  "--data-dir": _DATA_ROOT, "--recipe": _ORACLES}
_DATA_WRITES = "data.py writes preview.png (with --export: du.npz and dr.npz) under --out-dir DIR"
DATA_SIBLINGS = {**dict.fromkeys(("--output", "--outdir", "--output-dir"), _DATA_WRITES),
                 **dict.fromkeys(("--runs", "--runs-dir"), _DATA_WRITES + "; --runs is the model scripts' "
                                 "runs folder"),
                 "--data-dir": _DATA_ROOT}


def notice(old, new):
    """'<script>: OLD is now NEW; the old name goes in the next release', on stderr."""
    print(f"{os.path.basename(sys.argv[0])}: {old} is now {new}; the old name goes in the next release",
          file=sys.stderr)


def renamed(argv, renames):
    """argv (None: sys.argv[1:]) with the old names of renames = ({old: new option}, {(option, old value):
    new value}) replaced by the new ones (also as --opt=value), each announced with notice(). Whatever
    follows "--" is left alone."""
    names, values = renames
    argv, out = list(sys.argv[1:] if argv is None else argv), []
    for i, tok in enumerate(argv):
        if tok == "--":
            return out + argv[i:]
        opt, eq, val = tok.partition("=") if tok.startswith("--") else (tok, "", "")
        if opt in names:
            notice(opt, names[opt])
            opt = names[opt]
        key = (opt, val) if eq else (out[-1] if out else None, tok)
        if key in values:
            notice(f"{key[0]} {key[1]}", f"{key[0]} {values[key]}")
            opt, val = (opt, values[key]) if eq else (values[key], "")
        out.append(opt + eq + val)
    return out


def sibling(parser, argv, siblings):
    """The one-line error for the first option of argv that `parser` does not have and that names a
    sibling concept ("--out-dir is not an option of gan.py: the model scripts write under --runs DIR"),
    or None. Whatever follows "--" is left alone."""
    for tok in argv:
        if tok == "--":
            return None
        opt = tok.partition("=")[0]
        if opt in siblings and opt not in parser._option_string_actions:
            return f"{opt} is not an option of {parser.prog}: {siblings[opt]}"
    return None


def parse(parser, argv=None, renames=({}, {}), siblings=None):
    """(args, argv): argv (None: sys.argv[1:]) with its old names replaced (renamed), refused with one
    line through parser.error when it names a sibling concept (sibling), then parsed."""
    argv = renamed(argv, renames)
    msg = sibling(parser, argv, siblings or {})
    if msg:
        parser.error(msg)
    return parser.parse_args(argv), argv


def explicit(parser, argv):
    """The dests of the options set on the command line: argv parsed again with every default suppressed."""
    saved = [(a, a.default) for a in parser._actions]
    try:
        for a, _ in saved:
            a.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv)))
    finally:
        for a, d in saved:
            a.default = d
