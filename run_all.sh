#!/usr/bin/env bash
# run_all.sh: the whole study of "Do Generative Models Learn Rare Generative Factors?" in one command.
#
# What it does. Runs the paper's grid, 4 models (VAE, GAN, GAN-SD, DM) x 5 factors (colour, thin, thick,
# swell, fracture; sections 4-5) x rare digit 1 and 2 x seeds, plus CompCars (Table 3) when its data is
# present, then calls ztest.py to write Tables 1, 2, 4 (and 3) under results/ as Markdown, CSV and LaTeX.
# Options add the seed study (Appendix F), the lambda sweep of spectral decoupling (section 6.3,
# Appendix D) and the relaxed skew (Appendix E).
#
# Every cell is ONE call of a model script (python vae.py|gan.py|ddpm.py ...), so the scripts stay the
# single source of truth; this file only enumerates cells, runs them, and renders the tables.
#
# The D_u models are shared. A D_u model (runs/<run>/<factor>-balanced-seed<s>/) serves both rare digits,
# so each is trained once, by its own cell (the scripts' `--stage u`); a D_r cell (`--stage r`) trains its
# D_r model and runs the z-test once the D_u model's samples are there. The oracles of each factor
# (oracles.py) go first; then every model trains in one pool, the longest models first, a D_r model
# beside its D_u model rather than after it, so that both cores stay busy; a D_r cell that finished
# before its D_u model runs its z-test in a last pass (it only evaluates: its model is trained). No two
# running cells ever train the same model, so the runner needs no lock of its own.
#
# Resumable and idempotent. A cell whose output already exists is skipped (--force redoes it); an
# interrupted cell is rerun and the script resumes from its own checkpoint. A failing cell is reported
# and the others go on; the summary lists the failed cells and the exit status is 1 if any failed.
#
# Usage:
#   bash run_all.sh                          # the paper's grid (sized for a GPU)
#   bash run_all.sh --quick --factors colour --jobs 2   # CPU preset: Table 1's colour column (2 cores)
#   bash run_all.sh --seeds 0,1,2            # Appendix F: mean/spread of z over seeds, #seeds with L
#   bash run_all.sh --lambdas 0.1,0.4,0.8,1.6 --models gan,gan-sd --factors colour   # SD sweep
#   bash run_all.sh --skew 0.9,0.1           # relaxed skew: also runs D_r with p_in 0.9, p_out 0.1
#   bash run_all.sh --jobs 4                 # 4 cells at once (one GPU each, round robin, if several)
#   bash run_all.sh --list --stage u > u.txt # one command per line, for GNU parallel or a Slurm array;
#   bash run_all.sh --list --stage r > r.txt #   run u.txt's cells first (docs/study.md, "Clusters")
#   bash run_all.sh --help                   # every option
#
# Exit status: 0 all cells done, 1 some cell failed, 2 bad option, 130/143 interrupted.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bash run_all.sh [options] [-- extra options for every model script]

Grid
  --models LIST    models to run, from vae,gan,gan-sd,ddpm (default: all four)
  --factors LIST   from colour,thin,thick,swell,fracture,cars (default: all; cars runs only when the
                   CompCars data is present, else it is skipped with a note)
  --rares LIST     rare digits for MNIST, 0-9 (default: 1,2)
  --seeds LIST     training seeds (default: 0); several seeds add the aggregated tables (Appendix F)
  --data-seed N    the data seed of D_u / D_r and the oracles (default: 0; runs of N > 0 are named -dsN)
  --oracles R      the oracles' recipe, robust (ours) or paper (section 5.2) (default: robust)
  --lambdas LIST   SD strengths for gan-sd; 0.8 is the paper's GAN-SD, others run as gan-sd<L>
                   (default: 0.8; the Appendix D sweep is 0.1,0.4,0.8,1.6)
  --skew P,Q       also run the relaxed skew: D_r with p_in=P, p_out=Q (default: off; strict 1,0 only)
  --stage S        all, u (oracles and D_u models only) or r (D_r models only; needs the D_u ones)
                   (default: all)
Presets (passed to every script)
  --quick          the documented CPU preset
  --cpu-full       --quick, longer where a model needs it to fit its data (the DM: 40 epochs; the GAN: 45 at twice the rate)
  --smoke          seconds-long runs, for tests
Running
  --jobs N         cells at once (default: 1); with several GPUs, job slot i gets GPU i mod #GPUs;
                   without, each cell gets OMP_NUM_THREADS=<cores>/N unless you set it
  --list           print one command per line and run nothing
  --force          redo cells whose output exists (passed to the scripts as --force; cached oracles stay)
  --runs DIR       the runs folder, where the model scripts write (default: runs)
  --out-dir DIR    where the tables and the logs are written (default: results)
  --python PATH    interpreter (default: .venv/bin/python if present, else python3)
  --data-root DIR, --cache-dir DIR, --device D   passed to every script when given
Tables (passed to ztest.py)
  --min-n N        a class with fewer than N samples in either model is "too few samples", never L;
                   0 = the paper's rule (default: 30, ztest.py's)
  --summary S      Table 4's rule: ours (L/M/?/-/n/b), paper (binary L/M, as the paper's Table 4),
                   equivalence (L only when TOST shows it), readable (ours, on the samples the
                   label oracle reads with p > 0.9), calibrated, morphometric or answer (calibrated
                   on colour, morphometric on the strokes; docs/readings.md) (default: ours)
  -h, --help       this help
Options after -- go to every script as they are (e.g. -- --samples 500); use them with a fresh --runs.
Exit status: 0 all cells done, 1 a cell (or the tables) failed, 2 bad option, 130/143 interrupted.
EOF
}

die() { echo "run_all.sh: $*" >&2; exit 2; }    # bad usage: one line, exit 2

# --------------------------------------------------------------------------- configuration
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL_MODELS=(vae gan gan-sd ddpm)                  # table column order: VAE / GAN / GAN-SD / DM
ALL_FACTORS=(colour thin thick swell fracture cars)
SD_PAPER=0.8                                      # section 6.3: lambda = 0.8 is "GAN-SD"

models="vae,gan,gan-sd,ddpm"; factors="colour,thin,thick,swell,fracture,cars"; rares="1,2"; seeds="0"
lambdas="$SD_PAPER"; skew=""; stage="all"; preset=""; jobs=1; list=0; force=0
runs="runs"; out_dir="results"; python=""; data_root=""; cache_dir=""; device=""; extra=(); min_n=""; summary=""
data_seed=""; recipe=""
renamed() { echo "run_all.sh: $1 is now $2; the old name goes in the next release" >&2; }

need() { [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die "option $1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    opt="$1"
    if [[ "$opt" == --*=* ]]; then set -- "${opt%%=*}" "${opt#*=}" "${@:2}"; opt="$1"; fi
    case "$opt" in
        --models)   need "$@"; models="$2"; shift 2 ;;
        --factors)  need "$@"; factors="$2"; shift 2 ;;
        --rares)    need "$@"; rares="$2"; shift 2 ;;
        --seeds)    need "$@"; seeds="$2"; shift 2 ;;
        --lambdas)  need "$@"; lambdas="$2"; shift 2 ;;
        --skew)     need "$@"; skew="$2"; shift 2 ;;
        --stage)    need "$@"; stage="$2"; shift 2 ;;
        --jobs)     need "$@"; jobs="$2"; shift 2 ;;
        --runs)     need "$@"; runs="$2"; shift 2 ;;
        --out-dir)  need "$@"; out_dir="$2"; shift 2 ;;
        --out)      need "$@"; renamed --out --runs; runs="$2"; shift 2 ;;
        --results)  need "$@"; renamed --results --out-dir; out_dir="$2"; shift 2 ;;
        --data-seed) need "$@"; data_seed="$2"; shift 2 ;;
        --oracles)  need "$@"; recipe="$2"; shift 2 ;;
        --python)   need "$@"; python="$2"; shift 2 ;;
        --data-root) need "$@"; data_root="$2"; shift 2 ;;
        --cache-dir) need "$@"; cache_dir="$2"; shift 2 ;;
        --device)   need "$@"; device="$2"; shift 2 ;;
        --min-n)    need "$@"; min_n="$2"; shift 2 ;;
        --summary)  need "$@"; summary="$2"; shift 2 ;;
        --quick|--cpu-full|--smoke) [[ -z "$preset" || "$preset" == "$opt" ]] || die "--quick, --cpu-full and --smoke exclude each other"
                    preset="$opt"; shift ;;
        --list)     list=1; shift ;;
        --force)    force=1; shift ;;
        -h|--help)  usage; exit 0 ;;
        --)         shift; extra+=("$@"); break ;;
        *)          die "unknown option '$opt' (see --help)" ;;
    esac
done

# Validation: each bad value gets one line naming it and what is accepted.
split() { local IFS=,; read -r -a "$1" <<<"$2"; }     # split "a,b,c" into the array named $1
in_list() { local x="$1"; shift; local y; for y in "$@"; do [[ "$x" == "$y" ]] && return 0; done; return 1; }
nodup() {   # $1 = option, rest = its values (compared as given, or as numbers by the caller)
    local opt="$1" x; shift; local -A seen=()
    for x in "$@"; do [[ -z "${seen[$x]:-}" ]] || die "'$x' appears twice in $opt"; seen[$x]=1; done
}
split M "$models";  [[ ${#M[@]} -gt 0 ]] || die "--models is empty; accepted: ${ALL_MODELS[*]}"
for m in "${M[@]}"; do in_list "$m" "${ALL_MODELS[@]}" || die "unknown model '$m' in --models; accepted: ${ALL_MODELS[*]}"; done
split F "$factors"; [[ ${#F[@]} -gt 0 ]] || die "--factors is empty; accepted: ${ALL_FACTORS[*]}"
for f in "${F[@]}"; do in_list "$f" "${ALL_FACTORS[@]}" || die "unknown factor '$f' in --factors; accepted: ${ALL_FACTORS[*]}"; done
split K "$rares"
for k in "${K[@]}"; do [[ "$k" =~ ^[0-9]$ ]] || die "bad rare digit '$k' in --rares; accepted: 0-9"; done
split S "$seeds";   [[ ${#S[@]} -gt 0 ]] || die "--seeds is empty; give e.g. 0,1,2"
for s in "${S[@]}"; do [[ "$s" =~ ^[0-9]+$ ]] || die "bad seed '$s' in --seeds; accepted: integers >= 0"; done
num='^([0-9]+\.?[0-9]*|\.[0-9]+)$'
split L "$lambdas"
for l in "${L[@]}"; do [[ "$l" =~ $num ]] && awk -v x="$l" 'BEGIN{exit !(x > 0)}' \
    || die "bad lambda '$l' in --lambdas; accepted: numbers > 0 (0 is the plain GAN)"; done
if [[ -n "$skew" ]]; then
    split Q "$skew"
    [[ ${#Q[@]} -eq 2 && "${Q[0]}" =~ $num && "${Q[1]}" =~ $num ]] \
        && awk -v p="${Q[0]}" -v q="${Q[1]}" 'BEGIN{exit !(p <= 1 && q <= 1)}' \
        || die "bad --skew '$skew'; accepted: P,Q with 0 <= P, Q <= 1, e.g. 0.9,0.1"
fi
g() { LC_ALL=C printf '%g' "$1"; }   # numbers as the scripts print them in run names (Python's :g)
nodup --models "${M[@]}"; nodup --factors "${F[@]}"; nodup --rares "${K[@]}"; nodup --seeds "${S[@]}"
mapfile -t Lg < <(for l in "${L[@]}"; do g "$l"; echo; done); nodup --lambdas "${Lg[@]}"
in_list "$stage" all u r || die "bad --stage '$stage'; accepted: all, u, r"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "bad --jobs '$jobs'; accepted: an integer >= 1"
[[ -z "$data_seed" || "$data_seed" =~ ^[0-9]+$ ]] || die "bad --data-seed '$data_seed'; accepted: an integer >= 0"
[[ -z "$recipe" ]] || in_list "$recipe" robust paper || die "bad --oracles '$recipe'; accepted: robust, paper"
[[ -z "$device" || "$device" =~ ^(auto|cpu|cuda|cuda:[0-9]+)$ ]] \
    || die "bad --device '$device'; accepted: auto, cpu, cuda, cuda:N"      # study/runs.py's device spec
ds=""; [[ -z "$data_seed" || "$data_seed" -eq 0 ]] || ds="-ds$((10#$data_seed))"   # the scripts' run names
[[ -z "$min_n" || "$min_n" =~ ^[0-9]+$ ]] || die "bad --min-n '$min_n'; accepted: an integer >= 0"
[[ -z "$summary" ]] || in_list "$summary" ours paper equivalence readable calibrated morphometric answer \
    || die "bad --summary '$summary'; accepted: ours, paper, equivalence, readable, calibrated, morphometric, answer"
reading=(); [[ -z "$min_n" ]] || reading+=(--min-n "$min_n"); [[ -z "$summary" ]] || reading+=(--summary "$summary")
if [[ -z "$python" ]]; then
    if [[ -x "$HERE/.venv/bin/python" ]]; then python=".venv/bin/python"; else python="python3"; fi
fi

# The scripts are called from the repository root; relative --runs/--out-dir mean "from where you
# called", so they are made absolute unless you called from the repository root.
cd_abs() { if [[ "$1" == /* || "$PWD" == "$HERE" ]]; then echo "$1"; else echo "$PWD/$1"; fi; }
runs="$(cd_abs "$runs")"; out_dir="$(cd_abs "$out_dir")"
[[ "$python" == */* && "$python" != /* && "$PWD" != "$HERE" ]] && python="$PWD/$python"
( cd "$HERE" && command -v "$python" >/dev/null ) || die "--python '$python' is not an executable"
[[ -z "$data_root" ]] || data_root="$(cd_abs "$data_root")"
[[ -z "$cache_dir" ]] || cache_dir="$(cd_abs "$cache_dir")"
cd "$HERE"
# The interpreter must import the project (torch, numpy, ...): a missing or broken environment is one
# line here, not a traceback in every cell's log.
why="$("$python" -c 'import sys
try:
    import ztest
except Exception as e:
    print(f"{type(e).__name__}: {e}".splitlines()[0]); sys.exit(1)' 2>/dev/null)" \
    || die "'$python' cannot run the scripts (${why:-it failed to start}); use the project's environment" \
           "(README: setup) or --python .venv/bin/python"

# --------------------------------------------------------------------------- the grid
# A model token -> the script, its model options, and its run name (the folder under --runs). This
# table is the only place that knows the scripts; add your own model as one more case.
model_cells() {   # model token -> lines "script|options|run name"
    case "$1" in
        vae)    echo "vae.py||vae" ;;
        gan)    echo "gan.py|--sd-lambda 0|gan" ;;
        gan-sd) for l in "${L[@]}"; do
                    if [[ "$(g "$l")" == "$(g $SD_PAPER)" ]]; then echo "gan.py|--sd-lambda $(g "$l")|gan-sd"
                    else echo "gan.py|--sd-lambda $(g "$l")|gan-sd$(g "$l")"; fi
                done ;;
        ddpm)   echo "ddpm.py||ddpm" ;;
    esac
}

# CompCars runs only when data.py finds its data; otherwise a note, not an error.
cars=0; cars_note=""
if in_list cars "${F[@]}"; then
    if cars_note="$("$python" - ${data_root:+"$data_root"} <<'EOF' 2>&1
import sys
import data
root = data.data_root(sys.argv[1] if len(sys.argv) > 1 else None)
try:   # checks the folder and its files without decoding every image
    data.cars_dir(root)
except (FileNotFoundError, ValueError) as e:
    print(str(e).splitlines()[0] if str(e) else type(e).__name__); sys.exit(1)
EOF
)"; then cars=1; else cars_note="CompCars skipped (Table 3 not produced): ${cars_note:-its data was not found}"; fi
fi

# Options for every call: the data/cache/device ones go to oracles.py too; the rest only to the models.
shared=(); [[ -z "$data_root" ]] || shared+=(--data-root "$data_root")
[[ -z "$cache_dir" ]] || shared+=(--cache-dir "$cache_dir"); [[ -z "$device" ]] || shared+=(--device "$device")
[[ -z "$data_seed" ]] || shared+=(--data-seed "$data_seed"); [[ -z "$recipe" ]] || shared+=(--oracles "$recipe")
common=(--runs "$runs"); [[ -n "$preset" ]] && common+=("$preset"); [[ $force -eq 1 ]] && common+=(--force)
[[ -z "$min_n" ]] || common+=(--min-n "$min_n")       # the scripts print the z-table too
common+=("${shared[@]}" "${extra[@]}")

# A cell is the record "name|file whose existence means done|D_u cell it needs|command", in two lists:
# U (the oracles and the D_u models) and R (the D_r models and their z-tests); --list prints U, then R.
U=(); R=()
add_cell() {   # $1 = U or R, $2 = name, $3 = done file, $4 = D_u cell it needs (or ""), rest = command
    local list="$1" rec="$2|$3|$4|"; shift 4
    rec+="$(printf '%q ' "$@")"; rec="${rec% }"
    if [[ "$list" == U ]]; then U+=("$rec"); else R+=("$rec"); fi
}
# Phase 1 opens with the two oracles of each factor (section 5.2): oracles.py trains them once into the
# cache, or just loads them and prints their accuracy. So the D_r cells never queue for them, and with
# --jobs the training overlaps the D_u models. There is no output file to check: it always runs.
for f in "${F[@]}"; do
    if [[ "$f" == cars ]]; then [[ $cars -eq 1 ]] || continue; o=(--dataset cars); else o=(--factor "$f"); fi
    [[ "$preset" == --smoke ]] && o+=(--smoke)    # smoke oracles for smoke runs; --quick uses the real ones
    add_cell U "oracles/$f" "" "" "$python" oracles.py "${o[@]}" "${shared[@]}"
done
skews=("1|0")
[[ -n "$skew" ]] && ! [[ "$(g "${Q[0]}")" == 1 && "$(g "${Q[1]}")" == 0 ]] && skews+=("$(g "${Q[0]}")|$(g "${Q[1]}")")
for m in "${M[@]}"; do
  while IFS='|' read -r script mopts run; do
    read -r -a mo <<<"$mopts"
    for s in "${S[@]}"; do
      for f in "${F[@]}"; do
        if [[ "$f" == cars ]]; then
          [[ $cars -eq 1 ]] || continue
          d=cars; base=(--dataset cars --rare 0); rlist=(0); sks=("1|0")   # no relaxed skew for cars
        else
          d="$f"; base=(--factor "$f"); rlist=("${K[@]}"); sks=("${skews[@]}")
        fi
        du="$run/$d-balanced$ds-seed$s"
        add_cell U "$du" "$runs/$du/samples.npz" "" \
            "$python" "$script" "${mo[@]}" "${base[@]}" --seed "$s" --stage u "${common[@]}"
        for k in "${rlist[@]}"; do
          for sk in "${sks[@]}"; do
            pin="${sk%|*}"; pout="${sk#*|}"
            if [[ "$sk" == "1|0" ]]; then cell="$d-rare$k$ds-seed$s"; so=()
            else cell="$d-rare$k-pin$pin-pout$pout$ds-seed$s"; so=(--p-in "$pin" --p-out "$pout"); fi
            [[ "$f" == cars ]] && k_opt=() || k_opt=(--rare "$k")
            add_cell R "$run/$cell" "$runs/$run/$cell/result.json" "$du" \
                "$python" "$script" "${mo[@]}" "${base[@]}" "${k_opt[@]}" "${so[@]}" --seed "$s" --stage r "${common[@]}"
          done
        done
      done
    done
  done < <(model_cells "$m")
done
[[ "$stage" == r ]] && U=()
[[ "$stage" == u ]] && R=()

if [[ $list -eq 1 ]]; then       # one command per line, nothing run, nothing written
    for c in "${U[@]}" "${R[@]}"; do echo "${c#*|*|*|}"; done
    [[ -n "$cars_note" ]] && echo "# $cars_note" >&2
    exit 0
fi


# --------------------------------------------------------------------------- running the cells
# A pool of $jobs slots. Each cell runs in the background (so Ctrl-C can stop it cleanly) with its
# output appended to its own log, results/logs/<run>/<cell>.log. With several GPUs, slot i sees GPU
# i mod #GPUs only (CUDA_VISIBLE_DEVICES), so --jobs <#GPUs> puts one cell on each GPU.
gpus=()
if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then split gpus "$CUDA_VISIBLE_DEVICES"
elif command -v nvidia-smi >/dev/null 2>&1; then
    n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    for ((i = 0; i < n; i++)); do gpus+=("$i"); done
fi
[[ ${#gpus[@]} -gt 1 ]] || gpus=()               # one GPU or none: leave the device choice alone
if [[ ${#gpus[@]} -eq 0 && $jobs -gt 1 && -z "${OMP_NUM_THREADS:-}" ]]; then
    n=$(( $(nproc 2>/dev/null || echo "$jobs") / jobs ))  # CPU cells share the cores, not oversubscribe
    export OMP_NUM_THREADS=$(( n > 0 ? n : 1 ))
fi

mkdir -p "$out_dir/logs"
if command -v flock >/dev/null 2>&1; then        # two runners on one results folder would race
    exec 9>"$out_dir/.run_all.lock"
    flock -n 9 || die "another run_all.sh is running on $out_dir (lock file $out_dir/.run_all.lock)"
fi

t0=$SECONDS; total=$(( ${#U[@]} + ${#R[@]} )); done_n=0; skipped=0; failed=()
declare -A bad_u=()                              # D_u cells that failed: their D_r cells cannot run
slot_pid=(); slot_rec=(); slot_t=()
hms() { printf '%dh%02dm%02ds' $(($1 / 3600)) $(($1 % 3600 / 60)) $(($1 % 60)); }
status() {   # one line per cell event: [done/total] what cell (elapsed since the start)
    printf '[%*d/%d] %-6s %s  (elapsed %s)\n' ${#total} "$done_n" "$total" "$1" "$2" "$(hms $((SECONDS - t0)))"
}
field() { local IFS='|'; local -a a; read -r -a a <<<"$1"; echo "${a[$2]}"; }   # field $2 of record $1
log_of() { echo "$out_dir/logs/$1.log"; }
preset_of() {   # --quick / --cpu-full / --smoke / paper: the preset recorded in a result.json (samples.npz: as asked)
    [[ "$1" == *.json ]] || { echo "${preset:-paper}"; return; }
    if grep -q '"smoke": true' "$1"; then echo --smoke; elif grep -q '"cpu_full": true' "$1"; then echo --cpu-full
    elif grep -q '"quick": true' "$1"; then echo --quick; else echo paper; fi
}

finish() {   # the cell in slot $1 ended with exit status $2
    local name donef dep log why="" took=$((SECONDS - ${slot_t[$1]})) rc="$2"
    name="$(field "${slot_rec[$1]}" 0)"; donef="$(field "${slot_rec[$1]}" 1)"; log="$(log_of "$name")"
    slot_pid[$1]=""; done_n=$((done_n + 1))
    dep="$(field "${slot_rec[$1]}" 2)"
    if [[ "$rc" -eq 0 && -z "$donef" ]]; then :          # the oracle step: its exit status says it all
    elif [[ "$rc" -eq 0 && ! -e "$donef" && -n "$dep" && ! -e "$runs/$dep/samples.npz" ]]; then
        if [[ "$pass" == pool && -z "${bad_u[$dep]:-}" ]]; then     # the z-test waits for the last pass
            deferred+=("${slot_rec[$1]}"); done_n=$((done_n - 1))
            echo "=== $name trained $(date '+%F %T'): its z-test waits for $dep" >>"$log"
            status trained "$name in $(hms "$took"); its z-test once $dep is done"; return 0
        fi
        why="D_r model trained, but no D_u model $dep yet for the z-test: run its --stage u, then this again"
    elif [[ "$rc" -eq 0 && ! -e "$donef" ]]; then why="exit 0 but no $donef"
    elif [[ "$rc" -ne 0 ]]; then why="exit $rc: $(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c1-200)"; fi
    echo "=== $name end $(date '+%F %T') ${why:-ok}" >>"$log"
    if [[ -z "$why" ]]; then status "done" "$name in $(hms "$took")"; return 0; fi
    failed+=("$name: $why (log: $log)"); bad_u["$name"]=1
    status FAILED "$name in $(hms "$took"): $why"
}
reap() {     # wait until fewer than $1 cells run (a poll: portable, and cheap next to minute-long cells)
    local i busy rc
    while :; do
        busy=0
        for i in "${!slot_pid[@]}"; do
            [[ -n "${slot_pid[i]}" ]] || continue
            if kill -0 "${slot_pid[i]}" 2>/dev/null; then busy=$((busy + 1))
            else rc=0; wait "${slot_pid[i]}" || rc=$?; finish "$i" "$rc"; fi
        done
        [[ $busy -lt $1 ]] && return 0
        sleep 0.2
    done
}
cleanup() {  # on any exit: stop the cells still running (Ctrl-C, kill, or a bug in this script);
    local i      # rerunning continues them from their checkpoints
    for i in "${!slot_pid[@]}"; do
        [[ -n "${slot_pid[i]}" ]] || continue
        echo "run_all.sh: stopping $(field "${slot_rec[i]}" 0)"
        kill -TERM "${slot_pid[i]}" 2>/dev/null || true
        wait "${slot_pid[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'echo "run_all.sh: interrupted after $done_n/$total cells; run the same command again to continue"; exit 130' INT
trap 'echo "run_all.sh: interrupted after $done_n/$total cells; run the same command again to continue"; exit 143' TERM

run_cells() {   # run the given cell records, $jobs at a time, and wait for all of them
    local rec name donef dep cmd slot log
    for rec in "$@"; do
        name="$(field "$rec" 0)"; donef="$(field "$rec" 1)"; dep="$(field "$rec" 2)"; cmd="${rec#*|*|*|}"
        if [[ $force -eq 0 && -n "$donef" && -e "$donef" ]]; then
            if [[ "$(preset_of "$donef")" == "${preset:-paper}" ]]; then
                done_n=$((done_n + 1)); skipped=$((skipped + 1)); status skip "$name (output exists)"; continue
            fi    # made with another preset: the script says so (exit 2) rather than mixing them in a table
        fi
        reap "$jobs"     # (first: a D_u model that has just failed blocks its D_r cells)
        if [[ -n "$dep" && -n "${bad_u[$dep]:-}" ]]; then
            done_n=$((done_n + 1)); failed+=("$name: not run, its D_u model $dep failed")
            status FAILED "$name not run: its D_u model $dep failed"; continue
        fi
        for ((slot = 0; slot < jobs; slot++)); do [[ -n "${slot_pid[slot]:-}" ]] || break; done
        log="$(log_of "$name")"; mkdir -p "$(dirname "$log")"
        printf '=== %s start %s\n$ %s\n' "$name" "$(date '+%F %T')" "$cmd" >>"$log"
        status start "$name"
        (
            [[ ${#gpus[@]} -gt 0 ]] && export CUDA_VISIBLE_DEVICES="${gpus[slot % ${#gpus[@]}]}"
            eval "exec $cmd"
        ) >>"$log" 2>&1 </dev/null &
        slot_pid[slot]=$!; slot_rec[slot]="$rec"; slot_t[slot]=$SECONDS
    done
    reap 1
}

echo "run_all.sh: ${#U[@]} oracle and D_u cells, then ${#R[@]} D_r cells, $jobs at a time${gpus:+, on GPUs ${gpus[*]}}"
echo "run_all.sh: logs in $out_dir/logs/, runs in $runs/"
[[ -z "$cars_note" ]] || echo "note: $cars_note"
cost() {   # the order of the pool: the oracles, then the models by their time per cell, longest first
    case "${1%%/*}" in oracles) echo 0 ;; ddpm) echo 1 ;; gan*) echo 2 ;; *) echo 3 ;; esac
}
pool=()
for w in 0 1 2 3; do for rec in "${U[@]}" "${R[@]}"; do [[ "$(cost "$rec")" == "$w" ]] && pool+=("$rec"); done; done
pass=pool; deferred=()
run_cells "${pool[@]}"   # every model, once; a D_r cell whose D_u model is not done yet waits for ...
pass=eval
run_cells ${deferred[@]+"${deferred[@]}"}   # ... this pass, which only runs its z-test

# --------------------------------------------------------------------------- summary
n_failed=${#failed[@]}
echo "run_all.sh: $done_n/$total cells in $(hms $((SECONDS - t0))): $((done_n - skipped - n_failed)) ran," \
     "$skipped skipped (output existed), $n_failed failed"

# --------------------------------------------------------------------------- tables
# ztest.py renders the tables from the result files of this grid (Markdown tables.md, LaTeX tables.tex,
# text, JSON, one CSV per table, rows.csv), several seeds aggregated per cell: mean and spread of z and
# how many seeds give L. Each experiment gets its own folder, so that no table mixes them:
#   results/                          Tables 1, 2, 4 (and 3 for cars): VAE / VAE-mix / GAN / GAN-SD (0.8) / DM
#   results/sd-sweep/lambda<L>/       GAN next to GAN-SD with lambda L (Appendix D), for a --lambdas sweep
#   results/skew-pin<P>-pout<Q>/      the relaxed skew (Appendix E), with --skew
render() {   # $1 = folder, rest = result files; those that exist are rendered, replacing older tables
    local dir="$1" f files=(); shift
    for f in "$@"; do [[ -e "$f" ]] && files+=("$f"); done
    [[ ${#files[@]} -gt 0 ]] || return 1
    mkdir -p "$dir"; rm -rf "$dir/.tables.tmp"
    if "$python" ztest.py "${files[@]}" ${reading[@]+"${reading[@]}"} --out-dir "$dir/.tables.tmp" >"$dir/ztest.log" 2>&1 \
            && [[ -e "$dir/.tables.tmp/tables.md" ]]; then
        rm -f "$dir"/tables.{txt,md,tex,json} "$dir"/table*.csv "$dir/rows.csv"   # none left from a bigger grid
        mv "$dir/.tables.tmp"/* "$dir/" && rmdir "$dir/.tables.tmp"
        echo "tables: $dir/tables.md (.csv, .tex) from ${#files[@]} result files"
    else
        rm -rf "$dir/.tables.tmp"
        echo "tables: ztest.py FAILED for $dir, see $dir/ztest.log"; tables_failed=1; return 1
    fi
}
tables_failed=0
if [[ ${#R[@]} -gt 0 ]]; then
    main=(); skewed=(); declare -A sweep=()
    for rec in "${R[@]}"; do
        name="$(field "$rec" 0)"; res="$(field "$rec" 1)"; run="${name%%/*}"
        mix=(); [[ "$run" == vae* ]] && mix=("$runs/$run-mix/${name#*/}/result.json")   # vae.py's 2nd prior
        if [[ "$name" == *-pin*-pout* ]]; then
            [[ "$run" == gan-sd?* ]] || skewed+=("$res" ${mix[@]+"${mix[@]}"})   # gan-sd<L>: only in the sweep
        else
            [[ "$run" == gan-sd?* ]] || main+=("$res" ${mix[@]+"${mix[@]}"})
            [[ "$run" == gan* ]] && sweep[$run]+="$res"$'\n'
        fi
    done
    render "$out_dir" "${main[@]}" && main_ok=1 || main_ok=0
    if [[ ${#L[@]} -gt 1 || "$(g "${L[0]}")" != "$(g $SD_PAPER)" ]]; then
        for l in "${L[@]}"; do                 # the GAN-SD runs all show as "GAN-SD": one folder per lambda
            [[ "$(g "$l")" == "$(g $SD_PAPER)" ]] && run=gan-sd || run="gan-sd$(g "$l")"
            mapfile -t files < <(printf '%s' "${sweep[gan]:-}${sweep[$run]:-}")
            render "$out_dir/sd-sweep/lambda$(g "$l")" "${files[@]}" || true
        done
    fi
    [[ -z "$skew" ]] || render "$out_dir/skew-pin$(g "${Q[0]}")-pout$(g "${Q[1]}")" "${skewed[@]}" || true
    if [[ $main_ok -eq 1 && -e "$out_dir/tables.txt" ]]; then echo; cat "$out_dir/tables.txt"; fi
fi
[[ -z "$cars_note" ]] || echo "note: $cars_note"

if [[ $n_failed -gt 0 ]]; then
    echo "failed cells ($n_failed); fix the cause and run the same command again to redo only these:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
[[ $tables_failed -eq 0 ]] || exit 1
exit 0
