"""Our own values in a callback URL, for providers whose callbacks carry nothing of ours.

Signi and SELL&SIGN call back the URL they were given and sign nothing; the request's token (checked
by the core) and our reference (``ref``) travel in that URL's query string. One helper writes them
and one reads them, for both.
"""
import urllib.parse

REFERENCE_QUERY_PARAM = "ref"
REFERENCE_MAX_LENGTH = 128  # a longer "ref" in a callback is not ours: ignored


def query_value(query, name):
    """One value of a parsed query string (a dict of strings or of lists)."""
    value = (query or {}).get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value


def reference_from_query(query):
    """Our reference from the callback URL (``ref``), as trustworthy as the token beside it."""
    value = query_value(query, REFERENCE_QUERY_PARAM)
    if not isinstance(value, str) or len(value) > REFERENCE_MAX_LENGTH:
        return ""
    return value.strip()


def callback_query(callback_url, params, replaced=()):
    """``callback_url``'s query (the token kept) without ``replaced`` and ours, plus ``params``.

    Returns ``(parts, encoded query)``; ``params`` with an empty value are left out.
    """
    parts = urllib.parse.urlsplit(callback_url)
    drop = set(replaced) | {name for name, _value in params}
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k not in drop]
    query += [(name, value) for name, value in params if value]
    return parts, urllib.parse.urlencode(query)
