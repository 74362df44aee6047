"""Old import path of the dispatch queries, kept for callers outside the store.

The queries now live in modules named after their parts: :mod:`geodata.store.nearest` (KNN),
:mod:`geodata.store.routing` (point → grid/community/street, proposals),
:mod:`geodata.store.holidays` (the ``holidays`` table), :mod:`geodata.calendar` (the holiday file),
:mod:`geodata.store.incidents` (life cycle) and :mod:`geodata.store.incident_import` (bulk import).
Callers still on this path: ``api/commands/serve.py``,
``bench/dispatch.py``. New code imports the modules above.
"""

from geodata.calendar import read_calendar_file
from geodata.store.incident_import import IncidentImport, import_incidents
from geodata.store.nearest import nearest_responders, reader_engine

__all__ = ["IncidentImport", "import_incidents", "nearest_responders", "read_calendar_file", "reader_engine"]
