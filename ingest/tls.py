"""The certificate of the RTMPS listener, reloadable while the listener runs.

The listening socket keeps one :class:`ssl.SSLContext` for its life (asyncio's server holds it),
so a reload does not change that context: it builds a new one from the files, and the
listener's context hands every new handshake to the newest one in its SNI callback (called for
every ClientHello, with or without a server name). Connections already open keep the
certificate they were made with; a reload that fails (a missing or bad file, a key that does
not match) is logged and keeps the certificate in use.
"""

from __future__ import annotations

import logging
import ssl

from config.checks import load_server_certificate

log = logging.getLogger(__name__)


class ServerCertificate:
    """The TLS side of the RTMPS listener: :attr:`context` for ``create_server(ssl=...)``,
    :meth:`reload` to read the files again (on SIGHUP)."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        """Load ``cert_file`` and ``key_file`` (PEM); raises :class:`ssl.SSLError` or
        :class:`OSError` if they do not load."""
        self._cert_file, self._key_file = cert_file, key_file
        self.context = load_server_certificate(cert_file, key_file)
        """The listener's context; its certificate is the one loaded at start-up."""
        self.context.sni_callback = self._choose_context
        self._current = self.context
        """The context new handshakes use: the last one that loaded."""

    def reload(self) -> bool:
        """Read the certificate and key files again: new handshakes use them from now on.
        Returns whether they loaded; if not, the error is logged and the certificate in use
        stays."""
        try:
            context = load_server_certificate(self._cert_file, self._key_file)
        except (ssl.SSLError, OSError) as exc:
            log.error(
                "RTMPS certificate not reloaded (%s, %s): %s; still using the previous one",
                self._cert_file,
                self._key_file,
                exc,
            )
            return False
        self._current = context
        log.info("RTMPS certificate reloaded from %s", self._cert_file)
        return True

    def _choose_context(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: object
    ) -> None:
        """SNI callback: serve this handshake with the newest certificate."""
        if self._current is not self.context:
            connection.context = self._current
