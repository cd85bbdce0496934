"""The audit engine, one phase per module: the input plan, calling the implementation, measuring the
exact outputs and their bounds, judging, the search, and explaining the findings.

Data flows one way: ``plan`` and ``normcheck.strategies`` make inputs -> ``calls`` runs the
implementation, ``measure`` the oracle and the bounds -> ``judge`` turns errors into findings and
statistics -> ``explain`` diagnoses them and writes reproducers -> ``auditor`` puts them in the result.
"""
