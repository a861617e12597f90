# The two commands the README names. Both create what they need on a fresh clone.
.PHONY: demo test bench
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
bench:
	bash scripts/env_torch.sh && .venv/bin/python benchmarks/bench_build.py
