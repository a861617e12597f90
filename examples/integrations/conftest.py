"""The integration examples have no doctests; ``backends/torch/tests/test_integrations.py`` runs them.

Kept out of doctest collection so that collecting the torch side does not import
transformers and Lightning (about ten seconds each on the 2-core machine, per worker).
"""

collect_ignore_glob = ["*.py"]
