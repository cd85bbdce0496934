"""``normcheck scan``: find every norm in a package, group identical code, audit each distinct one, summarize.

The data flow one way: :mod:`~normcheck.scan.discover` (names in the package's source, imported)
-> :mod:`~normcheck.scan.fingerprint` (groups of identical code) -> :mod:`~normcheck.scan.runner`
(one default audit per group, in parallel, cached on disk by :mod:`~normcheck.scan.cache`)
-> :mod:`~normcheck.scan.summary` (one row per group; shards merge) -> :mod:`~normcheck.scan.render`.
"""
