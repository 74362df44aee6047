"""Personal data (个人信息) of residents: masks, and which roles may see it unmasked.

Residents' ``name``, ``phone`` and ``id_number`` (身份证号) are personal data. The service shows
them masked unless the caller's role and region allow otherwise (see ``api.auth``), and every
unmasked read is written to the audit log. These functions are pure: strings in, strings out; they
never log or print their input.

Masks keep just enough to recognise a record on the phone with the resident, not enough to
identify them:

- name: first character kept, every other character ``*``: ``张三`` → ``张*``, ``欧阳娜娜`` → ``欧***``.
- phone: first 3 and last 4 characters kept (a mobile's carrier prefix and the part people quote):
  ``13812341234`` → ``138****1234``; numbers shorter than 8 characters are masked whole.
- id_number: first 4 (province and city of issue) and last 4 kept: ``110101199001011234`` →
  ``1101**********1234``; shorter than 9 characters is masked whole.
"""

from __future__ import annotations

from collections.abc import Mapping

from gridmap.contract import PII_COLUMNS

MASK = "*"

#: Roles, from most to least powerful. ``admin`` manages tokens and reads the audit log; ``leader``
#: (街道党工委, 社区书记) views coverage and incidents; ``planner`` (street planners) redraws grids;
#: ``dispatcher`` routes incidents; ``responder`` (党员, 网格员) sees their own households and
#: incidents; ``viewer`` reads aggregated figures only.
ROLES = ("admin", "leader", "planner", "dispatcher", "responder", "viewer")

#: Roles that may see residents' personal data unmasked, inside their region. Planners redraw grids
#: from counts and viewers read aggregates: neither needs a name or a phone number. A responder
#: needs the contact details of the households they visit (routes narrow this to their own links).
PII_ROLES = frozenset({"admin", "leader", "dispatcher", "responder"})


def mask_name(name: str | None) -> str | None:
    """Mask a person's name, keeping the first character (``张三`` → ``张*``).

    Parameters
    ----------
    name : str or None
        The name; surrounding whitespace is dropped. None and "" are returned as they are.

    Returns
    -------
    str or None
        The first character followed by one ``*`` per remaining character; a one-character
        name becomes ``*``.
    """
    if name is None:
        return None
    s = str(name).strip()
    if not s:
        return s
    if len(s) == 1:
        return MASK
    return s[0] + MASK * (len(s) - 1)


def mask_phone(phone: str | None) -> str | None:
    """Mask a phone number, keeping the first 3 and last 4 characters (``13812341234`` → ``138****1234``).

    Parameters
    ----------
    phone : str or None
        The number as text (spaces and dashes are removed first, so ``138-1234-1234`` masks like
        ``13812341234``). None and "" are returned as they are.

    Returns
    -------
    str or None
        The masked number; one shorter than 8 characters is masked whole.
    """
    if phone is None:
        return None
    return _keep_ends("".join(str(phone).split()).replace("-", ""), 3, 4)


def mask_id_number(id_number: str | None) -> str | None:
    """Mask an identity card number (身份证号), keeping the first and last 4 characters.

    ``110101199001011234`` → ``1101**********1234``; a 15-digit old-style number keeps the same
    ends with 7 stars between.

    Parameters
    ----------
    id_number : str or None
        The number as text. None and "" are returned as they are.

    Returns
    -------
    str or None
        The masked number; one shorter than 9 characters is masked whole.
    """
    if id_number is None:
        return None
    return _keep_ends(str(id_number).strip(), 4, 4)


def _keep_ends(text: str, head: int, tail: int) -> str:
    """``text`` with all but ``head`` leading and ``tail`` trailing characters masked; a text too
    short to hide at least one character is masked whole."""
    if len(text) <= head + tail:
        return MASK * len(text)
    return text[:head] + MASK * (len(text) - head - tail) + text[-tail:]


MASKERS = {"name": mask_name, "phone": mask_phone, "id_number": mask_id_number}


def mask_record(record: Mapping, fields=PII_COLUMNS) -> dict:
    """A copy of ``record`` with its personal-data fields masked (other fields unchanged).

    Parameters
    ----------
    record : mapping
        One row, e.g. a household as a dict.
    fields : iterable of str
        Which keys to mask; default ``name``, ``phone``, ``id_number``. Keys missing from the
        record are skipped.
    """
    out = dict(record)
    for f in fields:
        if f in out:
            out[f] = MASKERS[f](out[f])
    return out


def has_pii(record: Mapping, fields=PII_COLUMNS) -> bool:
    """True when ``record`` carries a non-empty personal-data field (so reading it unmasked is audited)."""
    return any(record.get(f) not in (None, "") for f in fields)
