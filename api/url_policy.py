"""Which outbound URLs liverelay agrees to connect to: restream targets and webhooks.

Restream targets are ``rtmp://`` and ``rtmps://`` URLs, webhooks ``http://`` and ``https://``
URLs; both need a host. A URL is judged, and stored, in its normalised form
(:func:`normalised_url`): scheme in lower case and the host as the HTTP client connects to it
(yarl: lower case, IDNA/UTS #46 with NFKC, so ``127.0.0.1`` in full-width digits becomes
``127.0.0.1`` and ``exämple.com`` becomes ``xn--exmple-cua.com``); the path, query and
credentials are kept as given. Unless private targets are allowed, hosts that are loopback,
private, link-local, unspecified, reserved or multicast IP literals in any spelling, or
``localhost`` names, are refused (see :mod:`workers.egress` for the spellings and IPv6
embeddings). Host names are not resolved here, since what a name resolves to can change: the
webhook sender resolves through a resolver that drops private addresses, and the restream
output resolves and checks right before every start of its ffmpeg.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from workers.egress import connect_host, is_private_host

ALLOWED_SCHEMES = ("rtmp", "rtmps")
WEBHOOK_SCHEMES = ("http", "https")
_FORBIDDEN_CHARACTERS = frozenset(map(chr, range(33))) | {"\x7f"}  # controls and space
PRIVATE_PROBLEM = "url must not point to a loopback, private, link-local or unspecified address"


class UrlRefused(ValueError):
    """An outbound URL the policy does not accept; the message says why (safe to show)."""


def restream_url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a restream target, or ``None`` when it can."""
    return url_problem(url, schemes=ALLOWED_SCHEMES, allow_private=allow_private)


def webhook_url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot receive webhooks, or ``None`` when it can."""
    return url_problem(url, schemes=WEBHOOK_SCHEMES, allow_private=allow_private)


def url_problem(url: str, *, schemes: Sequence[str], allow_private: bool) -> str | None:
    """Why ``url`` is not an acceptable outbound URL with one of ``schemes``, or ``None``."""
    try:
        checked_url(url, schemes=schemes, allow_private=allow_private)
    except UrlRefused as exc:
        return str(exc)
    return None


def checked_url(url: str, *, schemes: Sequence[str], allow_private: bool) -> str:
    """``url`` normalised (:func:`normalised_url`) once the policy accepts it; raises
    :class:`UrlRefused` with the reason otherwise."""
    normalised = normalised_url(url, schemes=schemes)
    if not allow_private and is_private_host(connect_host(normalised)):
        raise UrlRefused(PRIVATE_PROBLEM)
    return normalised


def normalised_url(url: str, *, schemes: Sequence[str]) -> str:
    """``url`` with its scheme in lower case, its host as the client connects to it and an
    explicit port in ASCII digits; everything else as given. :class:`UrlRefused` when it is not
    a URL with a host and one of ``schemes``."""
    if any(ch in _FORBIDDEN_CHARACTERS for ch in url):
        raise UrlRefused("url must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise UrlRefused("url is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise UrlRefused("url must start with " + " or ".join(f"{s}://" for s in schemes))
    if not parts.hostname:
        raise UrlRefused("url must have a host")
    try:
        return _rebuilt(url, parts.netloc, scheme)
    except ValueError:
        raise UrlRefused("url is not a valid URL") from None


def _rebuilt(url: str, netloc: str, scheme: str) -> str:
    """``url`` with ``scheme`` and the normalised authority; :class:`ValueError` when the
    normalised URL would not name the same host and port (to yarl and to urlsplit alike)."""
    head = f"{scheme}://{netloc}"
    if url[: len(scheme)].lower() != scheme or not url[len(scheme) :].startswith(
        head[len(scheme) :]
    ):
        raise ValueError("unexpected URL layout")
    host = connect_host(url)
    port = urlsplit(url).port
    userinfo, at, _ = netloc.rpartition("@")
    shown = f"[{host}]" if ":" in host else host
    authority = f"{userinfo}{at}{shown}" + (f":{port}" if port is not None else "")
    normalised = f"{scheme}://{authority}{url[len(head) :]}"
    if any(ch in _FORBIDDEN_CHARACTERS for ch in normalised):  # IDNA can produce a space
        raise ValueError("the normalised host has whitespace or control characters")
    if connect_host(normalised) != host or urlsplit(normalised).port != port:
        raise ValueError("the normalised URL names another host")
    return normalised
