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
one-line notice on stderr, and never means something else.
"""
import argparse
import os
import sys

# {old option: new option} and {(option, old value): new value}, per script
MODEL_RENAMES = {"--out": "--runs"}, {("--stage", "both"): "all"}
DATA_RENAMES = {"--seed": "--data-seed"}, {}
ORACLE_RENAMES = {"--recipe": "--oracles"}, {}


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
