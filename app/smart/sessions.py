"""Server-side launch and session state, behind a signed, HttpOnly cookie.

The store lives in the memory of one worker process. With several workers, the load balancer must keep a
browser on one worker (sticky sessions), or a launch started on one worker fails its `state` check on
another and the user is asked to launch again; a restart ends every session. Nothing in here is PHI
beyond the patient id, and nothing of it is logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.smart.oauth import AppContext, SmartConfiguration, TokenGrant

Clock = Callable[[], datetime]


@dataclass
class PendingLaunch:
    """Between the redirect to the authorization server and its answer."""

    state: str
    iss: str
    config: SmartConfiguration
    verifier: str
    created_at: datetime

    def __repr__(self) -> str:
        return "PendingLaunch(...)"


@dataclass
class SmartSession:
    """A browser's session: the pending launch, then the FHIR server, tokens and launch context."""

    id: str
    created_at: datetime
    pending: PendingLaunch | None = None
    iss: str | None = None
    token_endpoint: str | None = None
    grant: TokenGrant | None = None
    app_context: AppContext = field(default_factory=AppContext)

    def __repr__(self) -> str:
        return f"SmartSession(active={self.grant is not None})"

    @property
    def patient(self) -> str | None:
        return self.grant.patient if self.grant else None


class CookieSigner:
    """`<session id>.<HMAC-SHA256>`; verification is constant time."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, session_id: str) -> str:
        return f"{session_id}.{self._mac(session_id)}"

    def unsign(self, value: str) -> str | None:
        session_id, _, mac = value.rpartition(".")
        if not session_id or not hmac.compare_digest(mac, self._mac(session_id)):
            return None
        return session_id

    def _mac(self, session_id: str) -> str:
        digest = hmac.new(self._key, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class SessionStore:
    """Sessions by id, oldest evicted first beyond `max_sessions`; expired ones are dropped when looked up."""

    def __init__(
        self,
        *,
        clock: Clock,
        max_age: timedelta,
        launch_max_age: timedelta,
        max_sessions: int,
    ) -> None:
        self._clock = clock
        self._max_age = max_age
        self._launch_max_age = launch_max_age
        self._max_sessions = max_sessions
        self._sessions: OrderedDict[str, SmartSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self) -> SmartSession:
        session = SmartSession(id=secrets.token_urlsafe(32), created_at=self._clock())
        self._sessions[session.id] = session
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> SmartSession | None:
        if session_id is None:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if self._clock() - session.created_at > self._max_age:
            del self._sessions[session_id]
            return None
        return session

    def take_pending(self, session: SmartSession, state: str) -> PendingLaunch | None:
        """The pending launch if `state` matches and it is fresh; it is used at most once either way."""
        pending, session.pending = session.pending, None
        if pending is None or not hmac.compare_digest(pending.state, state):
            return None
        if self._clock() - pending.created_at > self._launch_max_age:
            return None
        return pending

    def rotate(self, session: SmartSession) -> None:
        """Give the session a fresh id once the user is signed in (no session fixation)."""
        self._sessions.pop(session.id, None)
        session.id = secrets.token_urlsafe(32)
        self._sessions[session.id] = session

    def delete(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
