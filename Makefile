# The two commands the README names. Both create what they need on a fresh clone.
.PHONY: demo test bench fuzz
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
bench:
	bash scripts/env_torch.sh && .venv/bin/python benchmarks/bench_build.py
# The long fuzz run (>= 10,000 generated specs; `make test` runs a small derandomized share).
fuzz:
	bash scripts/env_torch.sh && MULTILR_FUZZ=long MULTILR_FIGURES=build/figures-fuzz .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py && .venv/bin/python -m multilr.testing figures build/figures-fuzz
