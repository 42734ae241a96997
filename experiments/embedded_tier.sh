#!/usr/bin/env bash
# The embedded-tier experiment (README -> Results): BAO against the UserRL baseline on the embedded
# Function tasks, three training seeds each, from one behaviour-enhanced SFT start, on a 2-core CPU.
#
#   experiments/embedded_tier.sh            # every stage, in order; rerun it to continue
#   experiments/embedded_tier.sh runs       # one stage: data | sft | start | runs (= bao + baselines) | compare | publish
#
# Resumable at every point: finished runs are skipped, a started run resumes from its last
# checkpoint (`baorl train --resume`), an evaluation resumes where it stopped. Nothing restarts from
# scratch. Each run's provenance.jsonl names the commit of every start and resume.
#
# Seeds: BAO seed i and baseline seed i share the start, the data order (train.seed=i) and the
# budget. The runs go through two lanes side by side, one CPU thread each (lane A: the BAO runs, then
# the second effort-cost run, without gradient checkpointing; lane B: the UserRL baselines, then the
# first and third effort-cost runs, with it; lane_a says why); each run is trained, then evaluated
# greedily on all 78 Function test tasks at the training budget (1,152 prompt + 1,024 response
# tokens, <= 256 per turn). The seed-0 pair's step 1 ran with checkpointing on in both runs.
set -euo pipefail
cd "$(dirname "$0")/.."
BAORL=${BAORL:-.venv/bin/baorl}
OUT=${OUT:-runs/embedded}
SEEDS=${SEEDS:-"0 1 2"}
EFFORT_W=${EFFORT_W:-0.05}   # the effort-cost baseline's w per user-involved turn
EVAL_ARGS=(--gym function --split test --max-prompt-tokens 1152 --max-response-tokens 1024
           --max-new-tokens 256 --chat-template chatml-tools --batch-size 32)
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

ATTEMPTS=${ATTEMPTS:-3}  # a run or evaluation that dies (e.g. killed for memory) is resumed, up to this often

train() {  # train NAME CONFIG SEED GC [--set ...]: start, resume or skip one run (GC: see stage_runs)
    local name=$1 config=$2 seed=$3 gc=$4 attempt; shift 4
    local dir=$OUT/$name
    if [[ -f $dir/final/config.json ]]; then log "$name: finished"; return; fi
    mkdir -p "$OUT/logs"
    for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
        if [[ -f $dir/config.yaml ]]; then
            log "$name: resuming"
            $BAORL train --resume "$dir" --set train.gradient_checkpointing=$gc "$@" >>"$OUT/logs/$name.log" 2>&1 \
                && { log "$name: trained"; return; }
        else
            log "$name: starting"
            $BAORL train "$config" --set "output_dir=$dir" --set "name=$name" --set "train.seed=$seed" \
                --set train.gradient_checkpointing=$gc "$@" >>"$OUT/logs/$name.log" 2>&1 \
                && { log "$name: trained"; return; }
        fi
        log "$name: failed (attempt $attempt of $ATTEMPTS; see $OUT/logs/$name.log)"
    done
    return 1
}

evaluate() {  # evaluate NAME POLICY: greedy on the 78 test tasks (resumes by itself)
    local attempt
    mkdir -p "$OUT/logs"
    for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
        $BAORL eval --agent "hf:$2" "${EVAL_ARGS[@]}" --out "$OUT/eval/$1" >>"$OUT/logs/eval-$1.log" 2>&1 \
            && { log "eval $1: done"; return; }
        log "eval $1: failed (attempt $attempt of $ATTEMPTS; see $OUT/logs/eval-$1.log)"
    done
    return 1
}

stage_data() {
    # the budget-scheduled teacher: plans for 4 turns, answers after 1-2 probes, stops after a late rejection
    [[ -f runs/teach/function.sft.jsonl ]] || $BAORL teach --gym function --teacher function-solver --n 460 \
        --out runs/teach/function.jsonl --keep all --deadline 4 --probes 1-2 --concise
}

stage_sft() {
    if [[ -f runs/sft-embedded/model/config.json ]]; then log "sft: finished"; return; fi
    if compgen -G "runs/sft-embedded/checkpoints/checkpoint-*" >/dev/null; then
        OMP_NUM_THREADS=2 $BAORL sft configs/sft-embedded.yaml --resume
    else
        OMP_NUM_THREADS=2 $BAORL sft configs/sft-embedded.yaml
    fi
}

stage_start() { OMP_NUM_THREADS=2 evaluate sft-start runs/sft-embedded/model; }

job() {  # job NAME GC: train one run (start, resume or skip) and evaluate its final policy
    local name=$1 gc=$2 seed=${1##*-s}
    case $name in
        bao-*) train "$name" configs/bao-embedded.yaml "$seed" "$gc" ;;
        userrl-*) train "$name" configs/userrl-embedded.yaml "$seed" "$gc" ;;
        effort-*) train "$name" configs/userrl-embedded.yaml "$seed" "$gc" --set "bao.effort_cost=$EFFORT_W" ;;
        *) log "unknown run name: $name"; return 1 ;;
    esac
    evaluate "$name" "$OUT/$name/final"  # resumes where it stopped
}

lanes() {  # lanes "A1 A2 ..." "B1 B2 ...": two lanes side by side, each runs its jobs in order
    local a b rc=0  # lane A without gradient checkpointing, lane B with it (see below)
    (for j in $1; do job "$j" false; done) & a=$!
    sleep "${LANE_STAGGER:-5}"  # staggered: the two model loads do not collide
    (for j in $2; do job "$j" true; done) & b=$!
    wait $a || rc=$?; wait $b || rc=$?
    return $rc
}

# Two lanes, one CPU thread each. Memory decides the split: without gradient checkpointing an update
# peaks at 11-13 GiB (measured), so two at once overrun the VM's 23.5 GiB. Lane A runs without it:
# the BAO runs, then the second effort-cost run. Lane B runs with it (3-11 GiB peak): the UserRL
# baselines (while they solve nothing their passes are null and skipped, so checkpointing costs them
# little), then the first and third effort-cost runs. The effort-cost runs have a gradient on most
# steps (measured: ~1,100-1,450 s a step with checkpointing, ~700-1,040 s without), so they alternate
# lanes and the two lanes end near each other. The same math either way; only the wall time differs,
# reported per run.
effort_runs() {  # effort_runs 0|1: the effort-cost runs in lane B (0: seeds 1st, 3rd, ...) or lane A (1)
    local l="" s i=0
    for s in $SEEDS; do (( i++ % 2 == $1 )) && l+=" effort-s$s"; done
    echo "$l"
}
every_seed() { local s; for s in $SEEDS; do printf ' %s-s%s' "$1" "$s"; done; }  # every_seed POLICY
lane_a() { echo "$(every_seed bao)$(effort_runs 1)"; }
lane_b() { echo "$(every_seed userrl)$(effort_runs 0)"; }
stage_runs() { lanes "$(lane_a)" "$(lane_b)"; }
stage_bao() { for j in $(lane_a); do job "$j" false; done; }  # one lane alone
stage_baselines() { for j in $(lane_b); do job "$j" true; done; }  # the other lane alone

stage_compare() {
    local groups=() pairs=(--pair BAO,UserRL) bao=() base=() eff=()
    for s in $SEEDS; do bao+=("$OUT/eval/bao-s$s"); base+=("$OUT/eval/userrl-s$s"); eff+=("$OUT/eval/effort-s$s"); done
    groups+=(--group "BAO=$(IFS=,; echo "${bao[*]}")" --group "UserRL=$(IFS=,; echo "${base[*]}")")
    local evaluated=0 d  # the effort-cost group goes in once every seed is evaluated (metrics.json is written last)
    for d in "${eff[@]}"; do [[ -f $d/metrics.json ]] && evaluated=$((evaluated + 1)); done
    if [[ $evaluated -eq ${#eff[@]} ]]; then
        groups+=(--group "UserRL+effort=$(IFS=,; echo "${eff[*]}")")
        pairs+=(--pair UserRL+effort,UserRL --pair BAO,UserRL+effort)  # seed i of each shares the start and data
    else
        log "compare: the effort-cost group is left out: $evaluated of ${#eff[@]} runs evaluated"
    fi
    $BAORL compare "$OUT/eval/sft-start" "${groups[@]}" "${pairs[@]}" --out "$OUT/compare/embedded.html" \
        --title "Embedded tier: BAO, the UserRL baseline and UserRL + effort cost, 3 training seeds"
}

stage_publish() {  # what the README links: tables, Pareto plot, curves, cost (runs/ is not in git)
    local doc=docs/results/embedded-tier-seeds
    mkdir -p "$doc"
    cp "$OUT/compare/embedded-seeds.md" "$OUT/compare/embedded-pareto.png" "$doc/"
    .venv/bin/python experiments/embedded_curves.py "$OUT" --out "$doc/curves.png"
    .venv/bin/python experiments/embedded_cost.py "$OUT" --out "$doc/cost.md"
}

stages=("$@"); [[ ${#stages[@]} -gt 0 ]] || stages=(data sft start runs compare publish)
for st in "${stages[@]}"; do log "stage $st"; "stage_$st"; done
