"""Kept only for ``tests/test_integrity_security.py``, which imports the dispatch layout from here.

The dispatch tests now live by tier: ``domain/test_dispatch_rules.py``, ``store/test_dispatch_store.py``,
``api/test_dispatch_cli.py``, ``api/test_dispatch_routes.py``; the shared cases in ``dispatch_cases.py``.
Remove this file once that import reads ``from dispatch_cases import ...``.
"""

from dispatch_cases import _pt, insert_members, load_areas  # noqa: F401
