"""Access tokens shared by every client of one process, per account, until shortly before expiry.

Autenti and DocuSign both trade a signed JWT for a bearer token; asking again for every call would
double the calls and meet rate limits, so each keeps one :class:`TokenCache` at module level.
"""
import threading


class TokenCache:
    def __init__(self, margin):
        self.margin = margin  # seconds before expiry at which a token is no longer handed out
        self._lock = threading.Lock()
        self._tokens = {}  # key -> (access_token, expires_at)

    def get(self, key, now):
        """The cached token for ``key`` if it is still good at ``now`` for ``margin`` seconds."""
        with self._lock:
            cached = self._tokens.get(key)
        if cached and cached[1] - self.margin > now:
            return cached[0]
        return None

    def put(self, key, token, expires_at):
        with self._lock:
            self._tokens[key] = (token, expires_at)

    def forget(self, key):
        with self._lock:
            self._tokens.pop(key, None)

    def clear(self):
        with self._lock:
            self._tokens.clear()
