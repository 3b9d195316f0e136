"""Plain query functions over an :class:`AsyncSession`, one module per resource; the caller
owns the transaction.

Callers import the package (``from api import queries``) and call ``queries.create_account``
and the like: every query is re-exported here.
"""

from __future__ import annotations

from api.queries.accounts import (
    create_account,
    delete_account,
    get_active_account,
    list_active_accounts,
    rotate_secret,
)
from api.queries.live_streams import (
    NO_FILTER,
    StreamFilter,
    TargetSpec,
    add_restream_target,
    create_live_stream,
    delete_live_stream,
    find_publishable_stream,
    get_live_stream,
    list_live_streams,
    lock_live_stream,
    remove_restream_target,
    reset_stream_key,
    set_disabled,
    streams_by_id,
    update_live_stream,
    update_restream_target,
)
from api.queries.recordings import (
    DELETED,
    create_recording,
    delete_recording,
    get_recording,
    get_recording_by_id,
    latest_recording,
    list_recordings,
    unfinished_recordings,
)
from api.queries.sessions import (
    list_live_sessions,
)
from api.queries.signing_keys import (
    create_signing_key,
    delete_signing_key,
    get_signing_key,
    list_signing_keys,
)
from api.queries.webhooks import (
    count_webhooks,
    create_webhook,
    delete_webhook,
    get_webhook,
    list_webhook_deliveries,
    list_webhooks,
)

__all__ = [
    "DELETED",
    "NO_FILTER",
    "StreamFilter",
    "TargetSpec",
    "add_restream_target",
    "count_webhooks",
    "create_account",
    "create_live_stream",
    "create_recording",
    "create_signing_key",
    "create_webhook",
    "delete_account",
    "delete_live_stream",
    "delete_recording",
    "delete_signing_key",
    "delete_webhook",
    "find_publishable_stream",
    "get_active_account",
    "get_live_stream",
    "get_recording",
    "get_recording_by_id",
    "get_signing_key",
    "get_webhook",
    "latest_recording",
    "list_active_accounts",
    "list_live_sessions",
    "list_live_streams",
    "list_recordings",
    "list_signing_keys",
    "list_webhook_deliveries",
    "list_webhooks",
    "lock_live_stream",
    "remove_restream_target",
    "reset_stream_key",
    "rotate_secret",
    "set_disabled",
    "streams_by_id",
    "unfinished_recordings",
    "update_live_stream",
    "update_restream_target",
]
