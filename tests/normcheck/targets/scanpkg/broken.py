"""A module that fails to import."""

import normcheck_scan_test_missing_module  # noqa: F401


class BrokenRMSNorm:
    pass
