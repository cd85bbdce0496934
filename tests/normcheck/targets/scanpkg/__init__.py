"""A package of norms for ``normcheck scan``'s tests: correct, buggy, duplicated, unsupported and crashing."""
