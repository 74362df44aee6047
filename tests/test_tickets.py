"""Kept only for ``tests/web/test_report.py`` and ``tests/web/test_report_browser.py``, which import the
ticket cases from here.

The ticket tests now live in ``store/test_tickets_store.py``; the shared cases in ``ticket_cases.py``.
Remove this file once those imports read ``from ticket_cases import ...``.
"""

from ticket_cases import counts, gps_of, jpeg_with_gps  # noqa: F401
