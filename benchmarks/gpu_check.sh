#!/usr/bin/env bash
# One prepared GPU check (issue 12) for a lent machine: bench_gpu.py eager + compiled, bigger batches, the
# sample end to end, and torchrun (NCCL) runs that write and reload a checkpoint. Runs from a pinned snapshot
# of the repository, so edits in the working tree meanwhile change nothing.
#
#   here:   bash benchmarks/gpu_check.sh prepare [COMMIT]   # snapshot COMMIT (default HEAD) into .gpu_snapshot/,
#                                                           # data into .gpu_snapshot/gpu_data/, wheels into .whl/
#           bash benchmarks/gpu_check.sh prepare --worktree # snapshot the working tree instead (rehearsal only)
#           bash .gpu_snapshot/benchmarks/gpu_check.sh --cpu   # rehearse every step on the CPU (tiny, gloo)
#   device: bash .gpu_snapshot/benchmarks/gpu_check.sh        # carry [".gpu_snapshot", ".whl"]
#
# Each step has its own timeout inside an overall budget (GPU_CHECK_BUDGET_S, default 480 s); logs and JSON go
# to $OUT (re-bundled after every step, so a run cut short still returns what it did); a summary is printed last.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# --------------------------------------------------------------------------- prepare (here)
if [ "${1:-}" = "prepare" ]; then
    set -euo pipefail
    ROOT="$(git -C "$HERE" rev-parse --show-toplevel)"
    cd "$ROOT"
    EXCL="$(git rev-parse --git-path info/exclude)"
    mkdir -p "$(dirname "$EXCL")"
    for p in /.gpu_snapshot/ /.whl/; do grep -qxF "$p" "$EXCL" 2>/dev/null || echo "$p" >> "$EXCL"; done
    SNAP="$ROOT/.gpu_snapshot"
    rm -rf "$SNAP"
    mkdir -p "$SNAP"
    if [ "${2:-}" = "--worktree" ]; then
        git ls-files -co --exclude-standard -z | tar --null -T - -c | tar -x -C "$SNAP"
        echo "snapshot: working tree (rehearsal)" | tee "$SNAP/SNAPSHOT"
    else
        COMMIT="$(git rev-parse "${2:-HEAD}")"
        git archive "$COMMIT" | tar -x -C "$SNAP"
        echo "snapshot: $COMMIT" | tee "$SNAP/SNAPSHOT"
    fi
    mkdir -p "$SNAP/benchmarks"
    cp "$ROOT/benchmarks/bench_gpu.py" "$ROOT/benchmarks/bench_seed_ratio.py" "$ROOT/benchmarks/gpu_check.sh" \
        "$SNAP/benchmarks/"
    PY="${PY:-$ROOT/.venv/bin/python}"
    SAMPLE="${HAGRID_SAMPLE:-$ROOT/../shared/hagrid_sample}"
    DATA="$SNAP/gpu_data"
    mkdir -p "$DATA"
    if [ -d "$SAMPLE/hagrid_annotations" ]; then
        du -sh "$SAMPLE"
        # the whole sample (~70 MiB) does not fit in the 64 MiB that travels: its crops (made here by the
        # snapshot's own CLI) do, plus every SUBSET_EVERY-th frame of it in HaGRID's layout for the crop step
        PYTHONPATH="$SNAP" "$PY" -m engine.cli crop --data-dir "$SAMPLE" --out "$DATA/sample_crops" --no-progress \
            | tail -n 3
        SUBSET_EVERY="${SUBSET_EVERY:-3}" "$PY" - "$SAMPLE" "$DATA/sample_subset" <<'EOF'
import json, os, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
every = int(os.environ["SUBSET_EVERY"])
frames = 0
for ann in sorted((src / "hagrid_annotations").glob("*/*.json")):
    records = json.loads(ann.read_text())
    keep = {u: r for i, (u, r) in enumerate(sorted(records.items())) if i % every == 0}
    out = dst / ann.relative_to(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(keep))
    for uuid in keep:
        img = src / "hagrid_dataset_512" / ann.stem / f"{uuid}.jpg"
        if img.is_file():
            (dst / "hagrid_dataset_512" / ann.stem).mkdir(parents=True, exist_ok=True)
            shutil.copy2(img, dst / "hagrid_dataset_512" / ann.stem / img.name)
            frames += 1
print(f"sample subset: {frames} frames (1 in {every}) -> {dst}")
EOF
    else
        echo "no HaGRID sample at $SAMPLE: the device run falls back to a synthetic set"
    fi
    # wheels the device's python3 (3.12, torch preinstalled) lacks: orjson only (pyproject vs KINDS.md)
    mkdir -p "$ROOT/.whl"
    if ! ls "$ROOT"/.whl/orjson-*.whl >/dev/null 2>&1; then
        ORJSON="$("$PY" -c 'import orjson; print(orjson.__version__)')"
        python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$ROOT/.whl" "orjson==$ORJSON"
    fi
    ls -la "$ROOT/.whl"
    du -sh "$SNAP" "$SNAP/gpu_data" "$ROOT/.whl"
    total=$(( $(du -sb "$SNAP" | cut -f1) + $(du -sb "$ROOT/.whl" | cut -f1) \
              + $(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1) ))
    echo "travels: about $((total / 1048576)) MiB of the 64 MiB limit"
    if [ "$total" -gt $((62 * 1048576)) ]; then echo "too large: lower SUBSET_EVERY's share" >&2; exit 1; fi
    echo "device command: bash .gpu_snapshot/benchmarks/gpu_check.sh   (carry .gpu_snapshot and .whl)"
    exit 0
fi

# --------------------------------------------------------------------------- run (device, or --cpu here)
MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
SNAP="$(cd "$HERE/.." && pwd)"
ROOT="$(cd "$SNAP/.." && pwd)"
cd "$SNAP"
START=$(date +%s)
if [ "$MODE" = gpu ]; then BUDGET="${GPU_CHECK_BUDGET_S:-480}"; else BUDGET="${GPU_CHECK_BUDGET_S:-1500}"; fi
RESERVE=25  # kept for the summary
DEADLINE=$((START + BUDGET))
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
LOGS=/tmp/gpu_check_logs
WORK=/tmp/gpu_check_work
rm -rf "$LOGS" "$WORK"
mkdir -p "$LOGS" "$WORK"
STEPS="$LOGS/steps.tsv"
: > "$STEPS"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

if [ "$MODE" = gpu ]; then
    PY="${PY:-python3}"
    DEV=cuda
    TINY=()
    if ls "$ROOT"/.whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            "$ROOT"/.whl/*.whl || echo "WARNING: wheel install failed"
    fi
    export PYTHONPATH="$SNAP:/tmp/site"
else
    PY="${PY:-$ROOT/.venv/bin/python}"
    DEV=cpu
    TINY=(--tiny)
    export PYTHONPATH="$SNAP"
fi
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc_per_node=1)
CROPS="$SNAP/gpu_data/sample_crops"
SUBSET="$SNAP/gpu_data/sample_subset"

bundle() {
    tar -czf "$OUT/gpu_check_logs.tar.gz.tmp" -C "$LOGS" . 2>/dev/null && mv "$OUT/gpu_check_logs.tar.gz.tmp" "$OUT/gpu_check_logs.tar.gz"
}

# step NAME WANT_SECONDS CMD...: run CMD with min(WANT, what the budget leaves) as its timeout, tee'd to a log
step() {
    local name=$1 want=$2
    shift 2
    local now left t t0 rc dt
    now=$(date +%s)
    left=$((DEADLINE - now - RESERVE))
    t=$(( want < left ? want : left ))
    if [ "$t" -lt 20 ]; then
        echo "=== $name: SKIPPED (budget spent)"
        printf '%s\tskipped\t0\n' "$name" >> "$STEPS"
        return
    fi
    echo "=== $name (timeout ${t}s): $*" | tee "$LOGS/$name.log"
    t0=$(date +%s%N)
    if [ "$(type -t "$1")" = function ]; then  # timeout runs programs: a function goes through bash -c
        timeout -k 10 "$t" bash -c '"$@"' _ "$@" 2>&1 | tee -a "$LOGS/$name.log"
    else
        timeout -k 10 "$t" "$@" 2>&1 | tee -a "$LOGS/$name.log"
    fi
    rc=${PIPESTATUS[0]}
    dt=$(( ($(date +%s%N) - t0) / 100000000 ))
    dt="$((dt / 10)).$((dt % 10))"
    [ "$rc" = 124 ] && rc="124(timeout)"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$dt" >> "$STEPS"
    echo "=== $name: rc=$rc in ${dt}s"
    bundle
}

env_info() {
    date -u
    cat "$SNAP/SNAPSHOT" 2>/dev/null
    nvidia-smi 2>&1 || echo "(no nvidia-smi)"
    nproc
    "$PY" - <<'EOF'
import platform, torch, torch_geometric, torchvision, PIL, numpy
print("python", platform.python_version(), "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| tv", torchvision.__version__, "| pyg", torch_geometric.__version__, "| PIL", PIL.__version__, "| numpy", numpy.__version__)
print("cuda available:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("nccl:", torch.distributed.is_nccl_available(), torch.cuda.nccl.version() if torch.cuda.is_available() else "")
import orjson, engine.train, engine.checkpoint, data_loaders.crop, model_classes
print("project imports OK; orjson", orjson.__version__, "from", orjson.__file__)
EOF
}

make_synthetic_data() {  # no sample travelled: a synthetic set instead
    "$PY" -m engine.cli synth --out "$WORK/synth" --subjects 40 --images-per-subject 12 --no-progress &&
    "$PY" -m engine.cli crop --data-dir "$WORK/synth" --out "$WORK/synth_crops" --no-progress
}

reload_check() {  # the CLI torchrun run's checkpoint loads and predicts
    "$PY" - "$1" <<'EOF'
import sys, torch
from engine.checkpoint import load_model
model, ckpt = load_model(sys.argv[1])
b = {"landmarks": torch.rand(4, 21, 2) - 0.5, "has_landmarks": torch.ones(4, dtype=torch.bool)}
with torch.inference_mode():
    out = model.eval()(b)
assert out.shape == (4, ckpt["num_classes"]) and torch.isfinite(out).all()
print(f"reload OK: {sys.argv[1]} ({ckpt['model_name']}, epoch {ckpt['epoch'] + 1}, args.device={ckpt['args'].get('device')})")
EOF
}

export PY SNAP WORK
export -f env_info make_synthetic_data reload_check
echo "gpu_check: mode $MODE, snapshot $SNAP, budget ${BUDGET}s, logs -> $OUT"
step env 60 env_info
if [ ! -f "$CROPS/manifest.jsonl" ]; then
    step synth_data 120 make_synthetic_data
    CROPS="$WORK/synth_crops"
    SUBSET="$WORK/synth"
fi

BG=("$PY" benchmarks/bench_gpu.py --device "$DEV")
if [ "$MODE" = gpu ]; then
    E2E_ARGS=()
    CLI_EPOCHS=2
else
    E2E_ARGS=(--tiny --epochs 1)
    CLI_EPOCHS=1
fi
# 1. every model eager, recipe batch sizes (the figures the targets are read against)
step eager 150 "${BG[@]}" "${TINY[@]}" --no-compile --out "$LOGS/eager"
# 2. all five models through the real pipeline on the whole sample's crops (recipe epochs)
step e2e_sample 180 "${BG[@]}" --no-synthetic --crops-dir "$CROPS" "${E2E_ARGS[@]}" --out "$LOGS/e2e_sample" \
    --work-dir "$WORK/e2e_sample"
# 3. torchrun, world size 1: fit + checkpoint + reload + an explicit NCCL process group with DDP steps
step torchrun_ddp 150 "${TORCHRUN[@]}" benchmarks/bench_gpu.py --ddp-check --device "$DEV" "${TINY[@]}" \
    --crops-dir "$CROPS" --work-dir "$WORK/ddp"
# 4. the user's torchrun command line (engine.cli train), then its checkpoint reloaded
step torchrun_cli 120 "${TORCHRUN[@]}" -m engine.cli train --model gcn --crops-dir "$CROPS" --device "$DEV" \
    --epochs "$CLI_EPOCHS" --out-dir "$WORK/cli_models" --graphs-dir "$WORK/cli_graphs" --no-progress
step reload_cli 60 reload_check "$WORK/cli_models/gcn.pt"
# 5. bigger batches than the recipes' (what the hardware can do)
if [ "$MODE" = gpu ]; then
    step big_landmark 90 "${BG[@]}" --no-compile --models mlp gcn --batch-size 16384 --out "$LOGS/big_landmark"
    step big_image 120 "${BG[@]}" --no-compile --models cnn resnet34 fusion --batch-size 256 --out "$LOGS/big_image"
fi
# 6. the crop step (hand-gestures crop) on the sample's raw frames that travelled (1 in 3: the whole sample does
#    not fit in what travels); its crops/s and the whole sample's frame count give the crop part of the e2e time
step crop_subset 90 "$PY" -m engine.cli crop --data-dir "$SUBSET" --out "$WORK/subset_crops" --no-progress
# 7. torch.compile, whatever the budget leaves (models with targets first; JSON rewritten after each model)
if [ "$MODE" = gpu ]; then
    step compiled 300 "${BG[@]}" --compile-only --out "$LOGS/compiled"
else
    step compiled 300 "${BG[@]}" --tiny --compile-only --models mlp --out "$LOGS/compiled"
fi

# --------------------------------------------------------------------------- summary
{
    echo
    echo "================ gpu_check summary ($MODE, $(cat "$SNAP/SNAPSHOT" 2>/dev/null), $(( $(date +%s) - START )) s) ================"
    printf '%-14s %-14s %s\n' step rc seconds
    while IFS=$'\t' read -r n r s; do printf '%-14s %-14s %s\n' "$n" "$r" "$s"; done < "$STEPS"
    echo
    grep -h "^ddp-check: \(engine process group\|checkpoint reloaded\|explicit\)" "$LOGS/torchrun_ddp.log" 2>/dev/null
    grep -h "^reload OK" "$LOGS/reload_cli.log" 2>/dev/null
    grep -h "^e2e: all" "$LOGS"/e2e_*.log 2>/dev/null
    grep -h "crops in\|^manifest\|cropped" "$LOGS/crop_subset.log" 2>/dev/null | head -n 3
    echo
    jsons=$(ls "$LOGS"/*/bench_gpu.json 2>/dev/null)
    if [ -n "$jsons" ]; then
        # shellcheck disable=SC2086
        "$PY" benchmarks/bench_gpu.py --summarize $jsons
    fi
} 2>&1 | tee "$LOGS/summary.md"
cp "$LOGS/summary.md" "$OUT/summary.md"
bundle
# exit status: 0 only when every step that ran succeeded
! cut -f2 "$STEPS" | grep -qv '^\(0\|skipped\)$'
