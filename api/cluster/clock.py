"""The database's clock in SQL, so that every expiry is judged by one clock whatever the
nodes' own clocks say.

The statements of :mod:`api.cluster` are the same text on SQLite and PostgreSQL except for
these expressions. On SQLite the time is written the way SQLAlchemy stores a timestamp there
(``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC), so that it compares as text with stored values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.models import UTCDateTime

_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


@dataclass(frozen=True)
class DatabaseClock:
    """SQL expressions of the database's current time.

    ``now`` is the time of the statement. ``plus(name)`` is that time plus the number of
    seconds in the bound parameter ``name`` (which may be negative)."""

    now: str
    _plus: str

    def plus(self, param: str) -> str:
        """The statement's time plus ``:param`` seconds."""
        return self._plus.format(param=param)


POSTGRESQL_CLOCK = DatabaseClock(
    now="statement_timestamp()",
    _plus="(statement_timestamp() + make_interval(secs => :{param}))",
)
SQLITE_CLOCK = DatabaseClock(
    now=f"({_SQLITE_NOW} || '000')",
    _plus="(strftime('%Y-%m-%d %H:%M:%f', 'now', :{param} || ' seconds') || '000')",
)


def clock_of(session: AsyncSession) -> DatabaseClock:
    """The clock expressions for ``session``'s database."""
    return SQLITE_CLOCK if session.get_bind().dialect.name == "sqlite" else POSTGRESQL_CLOCK


async def database_now(session: AsyncSession) -> datetime:
    """The database's current time (UTC, aware)."""
    statement = text(f"SELECT {clock_of(session).now} AS now").columns(now=UTCDateTime)
    now: datetime = (await session.execute(statement)).scalar_one()
    return now
