#!/usr/bin/env bash
# The README's main job: fine-tune a digits CNN with multilr next to a uniform-rate baseline.
# `multilr demo` is the installed command (multilr's [project.scripts]); arguments pass through
# (--quick, --epochs N, --seed S, --out DIR, --quiet; `multilr demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env_torch.sh
exec .venv/bin/multilr demo "$@"
