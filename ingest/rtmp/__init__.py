"""Sans-IO RTMP server protocol: bytes in, :mod:`events <ingest.rtmp.events>` out.

:class:`RTMPServerConnection` does the handshake, chunk streams, protocol control messages,
acknowledgements and AMF0 commands; :class:`RTMPProtocolError` is the only exception it raises
from ``receive_data``.
"""

from ingest.rtmp.connection import RTMPServerConnection
from ingest.rtmp.errors import AMFDecodeError, RTMPProtocolError

__all__ = ["AMFDecodeError", "RTMPProtocolError", "RTMPServerConnection"]
