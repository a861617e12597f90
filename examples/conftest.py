"""pytest collects the examples' doctests on the torch side only.

The OneFlow examples import oneflow, which lives in the Python 3.10 environment; they
are run end to end by backends/oneflow/tests/test_example.py there.
"""

collect_ignore_glob = ["oneflow_*.py", "_oneflow_*.py"]
