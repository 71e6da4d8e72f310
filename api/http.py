"""One HTTP transport for every provider client: timeouts, safe retries, error mapping.

Retry policy (why): a call that the provider may have executed must not be repeated blindly, or a
contract could be sent twice. So:

* reads and other idempotent methods (GET, HEAD, PUT, DELETE) are retried on connection errors,
  timeouts, 5xx and 429;
* POST and PATCH are retried only when the provider certainly did not act on them: a 429 (refused
  before processing) or a failure to connect at all. A read timeout or a 5xx on a POST is reported,
  never retried, and the caller decides (usually: read the status first).

``Retry-After`` is honoured up to ``max_wait``. ``sleep`` is injectable so tests do not wait.

Every error says with ``outcome_unknown`` whether a call that changes something may have been
executed anyway (see :class:`~.base.ProviderError`); the outbox builds on that. URLs in error
details and logs lose their query string: signed download links and callback tokens live there.
"""
import datetime
import email.utils
import json
import logging
import time

import urllib.parse

import requests

from .base import ProviderError

_logger = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def _retry_after_seconds(value):
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):  # garbage in the header: no hint, use our own backoff
            return None
        if parsed is None:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return max(0.0, parsed.timestamp() - time.time())


def redact_url(url):
    """``url`` without its query string and fragment, for messages and logs.

    Signed links (Signi's 10-minute download URL, S3-style signatures) and our callback tokens
    travel in the query string; the path is enough to say which call failed.
    """
    try:
        parts = urllib.parse.urlsplit(str(url))
    except ValueError:
        return "<url>"
    redacted = parts._replace(query="", fragment="", netloc=parts.netloc.rpartition("@")[2])
    return urllib.parse.urlunsplit(redacted) + ("?…" if parts.query else "")


def _never_connected(exc):
    """True when ``requests`` failed before the request could reach the server."""
    reason, depth = exc, 0
    while isinstance(reason, BaseException) and depth < 6:
        if isinstance(reason, requests.exceptions.ConnectTimeout) or type(reason).__name__ in (
                "NewConnectionError", "NameResolutionError", "ConnectTimeoutError"):
            return True
        nested = getattr(reason, "reason", None)
        if nested is None and reason.args:
            nested = reason.args[0]
        reason, depth = nested, depth + 1
    return False


def default_error_detail(response):
    """Best effort to find a human message in an error body of unknown shape."""
    try:
        data = response.json()
    except ValueError:
        text = (response.text or "").strip()
        return text[:500]
    if isinstance(data, dict):
        for key in ("message", "detail", "error_description", "errorMessage", "error", "title",
                    "description"):
            value = data.get(key)
            if isinstance(value, str) and value:
                code = data.get("errorCode") or data.get("type") or data.get("code")
                return f"{value} [{code}]" if isinstance(code, str) and code and code != value else value
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(
                str(e.get("message") or e.get("description") or e) if isinstance(e, dict) else str(e)
                for e in errors[:5]
            )
    return json.dumps(data)[:500]


class HttpTransport:
    """A small wrapper around :class:`requests.Session` bound to one provider base URL."""

    def __init__(self, base_url, provider, timeout=(5.0, 30.0), max_retries=2, backoff=0.5,
                 max_wait=30.0, sleep=time.sleep, session=None, error_detail=default_error_detail):
        if not base_url:
            raise ProviderError("config", "no API base URL is configured", provider=provider)
        self.base_url = base_url.rstrip("/")
        self.provider = provider
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        self.session = session or requests.Session()
        self.error_detail = error_detail

    def url(self, path):
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method, path, *, expected=(200, 201, 202, 204), retry=None, **kwargs):
        """Send one request, retrying only where it is safe; return the response or raise.

        ``retry`` forces the retry decision for a non-idempotent call the caller knows is safe
        (e.g. a POST carrying an idempotency key).
        """
        method = method.upper()
        changes = method not in IDEMPOTENT_METHODS
        may_retry_any = not changes if retry is None else retry
        kwargs.setdefault("timeout", self.timeout)
        url = self.url(path)
        shown = f"{method} {redact_url(url)}"
        attempt = 0
        while True:
            attempt += 1
            can_retry = attempt <= self.max_retries
            try:
                response = self.session.request(method, url, **kwargs)
            except requests.exceptions.ConnectTimeout:
                error = ProviderError("timeout", f"could not connect for {shown}", provider=self.provider)
                if can_retry:
                    self._wait(attempt, None)
                    continue
                raise error from None  # the requests exception names the full URL, query included
            except requests.exceptions.Timeout:
                error = ProviderError("timeout", f"no answer to {shown} in time", provider=self.provider,
                                      outcome_unknown=changes)
                if can_retry and may_retry_any:
                    self._wait(attempt, None)
                    continue
                raise error from None  # the requests exception names the full URL, query included
            except requests.exceptions.ConnectionError as exc:
                # Refused before connecting: the provider certainly did not get it, a POST may be
                # retried. Reset after connecting: it may have arrived, so only idempotent calls.
                never_connected = _never_connected(exc)
                error = ProviderError("unavailable", f"connection failed for {shown}", provider=self.provider,
                                      outcome_unknown=changes and not never_connected)
                if can_retry and (may_retry_any or never_connected):
                    self._wait(attempt, None)
                    continue
                raise error from None  # the requests exception names the full URL, query included
            except requests.exceptions.RequestException as exc:
                raise ProviderError("protocol", f"{shown} failed: {type(exc).__name__}", provider=self.provider,
                                    outcome_unknown=changes) from None

            status = response.status_code
            if status in expected:
                return response
            error = self.to_error(response, outcome_unknown=changes and status >= 500)
            if can_retry and (status == 429 or (status >= 500 and may_retry_any)):
                _logger.info("%s: %s answered %s, retrying", self.provider, shown, status)
                self._wait(attempt, error.retry_after)
                continue
            raise error

    def to_error(self, response, outcome_unknown=False):
        status = response.status_code
        detail = self.error_detail(response) or response.reason or ""
        if status in (401, 403):
            kind = "auth"
        elif status == 404:
            kind = "not_found"
        elif status in (409, 410, 412, 423):
            kind = "conflict"
        elif status == 429:
            kind = "rate_limited"
        elif status >= 500:
            kind = "unavailable"
        elif 400 <= status < 500:
            kind = "rejected"
        else:
            kind = "protocol"
        try:
            body = response.json()
        except ValueError:
            body = (response.text or "")[:2000]
        return ProviderError(kind, detail, status_code=status, provider=self.provider,
                             retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
                             body=body, outcome_unknown=outcome_unknown)

    def _wait(self, attempt, retry_after):
        delay = retry_after if retry_after is not None else self.backoff * (2 ** (attempt - 1))
        self.sleep(min(delay, self.max_wait))

    # Conveniences -----------------------------------------------------------------------------

    def json(self, method, path, **kwargs):
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            # The call succeeded (2xx) but its answer is unreadable: a POST did act.
            raise ProviderError("protocol", f"{method.upper()} {redact_url(self.url(path))} did not answer JSON",
                                status_code=response.status_code, provider=self.provider,
                                outcome_unknown=method.upper() not in IDEMPOTENT_METHODS) from exc

    def content(self, method, path, **kwargs):
        return self.request(method, path, **kwargs).content
