#!/usr/bin/env bash
# The README's main job: fine-tune a digits CNN with multilr next to a uniform-rate baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env_torch.sh
exec .venv/bin/python examples/digits_finetune.py "$@"
