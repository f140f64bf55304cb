#!/usr/bin/env bash
# Regenerate the example HTML reports from the bundled examples (run from the repository root):
#   diff-mlp.html     examples/mlp.py built under a changed nn.Linear default (its bias starts at
#                     zero, as a torch upgrade could bring) against the committed snapshot
#   inspect-highway.html  every tensor of examples/highway.py against its recipe's density
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/site"
cat > "$work/site/sitecustomize.py" <<'PY'
import math

import torch.nn as nn


def reset_parameters(self):
    nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
    if self.bias is not None:
        nn.init.zeros_(self.bias)


nn.Linear.reset_parameters = reset_parameters
PY
PYTHONPATH="$work/site" initaudit freeze examples/mlp.py --out "$work/zero-bias/mlp.json" -q >/dev/null
initaudit diff snapshots/mlp/torch-2.13.0+cpu-seed0.json "$work/zero-bias/mlp.json" \
  --format html --out examples/report/diff-mlp.html || test $? -eq 1   # exit 1: drift
initaudit inspect examples/highway.py --no-rerun -q --format html \
  --out examples/report/inspect-highway.html
ls -l examples/report/*.html
