"""Pure builders of ffmpeg command lines, and redaction of secrets in what gets logged.

Every output reads FLV from its stdin (the hub feeds it) and copies the streams (``-c copy``);
only the output part differs. Flags were checked against ffmpeg 9.0 (``ffmpeg -h muxer=hls``,
``-h protocol=rtmp``, ``-h protocol=tls``); see each builder for why a flag is there.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from urllib.parse import quote, quote_plus, unquote, urlsplit

DEFAULT_PROBESIZE = 500_000
"""Bytes ffmpeg may read to find the streams. The hub starts every subscription with the FLV
header, metadata and both sequence headers, so a small value is enough and the first segment is
cut about one segment duration after the first keyframe (ffmpeg's default 5 MB/5 s waits longer)."""
DEFAULT_ANALYZEDURATION = 1.0
"""Seconds of media ffmpeg may analyse for the same purpose (caps the wait when a stream the FLV
header announced, such as audio, never comes)."""


def input_argv(
    ffmpeg: str,
    *,
    loglevel: str = "warning",
    probesize: int = DEFAULT_PROBESIZE,
    analyzeduration: float = DEFAULT_ANALYZEDURATION,
    progress: bool = True,
    copy: bool = True,
) -> list[str]:
    """The common head of every command: global options, FLV on stdin, streams copied.

    ``copy=False`` leaves out the maps and ``-c copy``: the caller maps each output itself
    (an adaptive-bitrate ladder, :mod:`workers.ladder_argv`).

    - ``-nostdin`` only turns off ffmpeg's keyboard interaction (``q`` to quit); it does not stop
      ``-i pipe:0`` from reading media, and ffmpeg already disables interaction when an input is
      ``pipe:``. So stdin is always media and the graceful stop is EOF (closing stdin).
    - ``-nostats -progress pipe:1 -stats_period 1``: no human stats on stderr; one machine-readable
      ``key=value`` block per second on stdout ending with ``progress=continue|end``
      (``out_time_us`` advances for every muxer, ``total_size`` is ``N/A`` for HLS).
    - no ``-fflags +nobuffer``: it drops the packets read while probing, so the first GOP is lost
      and the first segment comes a GOP later. ``+genpts`` is not needed: FLV carries pts.
    - ``-map 0:v? -map 0:a?``: audio and video if present; FLV data/text streams (e.g.
      ``onTextData``) are left out because MPEG-TS and FLV outputs cannot copy them.
    """
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        loglevel,
        "-nostats",
        *(["-progress", "pipe:1", "-stats_period", "1"] if progress else []),
        "-probesize",
        str(probesize),
        "-analyzeduration",
        str(round(analyzeduration * 1_000_000)),
        "-f",
        "flv",
        "-i",
        "pipe:0",
        *(["-map", "0:v?", "-map", "0:a?", "-c", "copy"] if copy else []),
    ]


def hls_argv(
    ffmpeg: str,
    *,
    segment_seconds: float,
    segment_pattern: str,
    playlist_path: str,
    start_number: int = 0,
    list_size: int = 10,
    loglevel: str = "warning",
) -> list[str]:
    """FLV on stdin -> MPEG-TS segments plus a private playlist read by the playlist keeper.

    ``segment_pattern`` is a path with a ``%d``-style counter (e.g. ``seg%06d.ts``) that
    ``start_number`` seeds, so a restarted ffmpeg can continue the numbering. ffmpeg never deletes
    segments here (no ``delete_segments`` flag): liverelay owns the window and deletion.
    ``hls_flags``:

    - ``temp_file``: each segment is written to ``<name>.tmp`` and renamed when complete (and the
      playlist likewise), so a segment name appears only with its full content. Readers must
      ignore ``*.tmp`` names.
    - ``independent_segments``: every segment starts with a keyframe (cut on keyframes with
      ``-c copy``), announced as ``EXT-X-INDEPENDENT-SEGMENTS``.

    When stdin reaches EOF ffmpeg writes the last segment and ``#EXT-X-ENDLIST``, then exits 0.
    """
    return [
        *input_argv(ffmpeg, loglevel=loglevel),
        *hls_output_argv(
            segment_seconds=segment_seconds,
            segment_pattern=segment_pattern,
            playlist_path=playlist_path,
            start_number=start_number,
            list_size=list_size,
        ),
    ]


def hls_output_argv(
    *,
    segment_seconds: float,
    segment_pattern: str,
    playlist_path: str,
    start_number: int = 0,
    list_size: int = 10,
) -> list[str]:
    """The output part of :func:`hls_argv` (one of several in a ladder's command)."""
    if "%" not in segment_pattern:
        raise ValueError(f"HLS segment pattern {segment_pattern!r} has no %d counter")
    return [
        "-f",
        "hls",
        "-hls_time",
        _seconds(segment_seconds),
        "-hls_list_size",
        str(list_size),
        "-hls_segment_type",
        "mpegts",
        "-hls_flags",
        "independent_segments+temp_file",
        "-start_number",
        str(start_number),
        "-hls_segment_filename",
        segment_pattern,
        playlist_path,
    ]


LOW_LATENCY_FRAGMENT_SECONDS = 0.2
"""ffmpeg's ``-frag_duration`` in low-latency mode: one part about every 200 ms."""
LOW_LATENCY_AUDIO_FRAGMENT_SECONDS = 0.19
"""``-frag_duration`` of a stream without video: its AAC fragments (9 frames at 44.1 and 48 kHz)
then fit the same part target as video's (:mod:`workers.llhls_part_target`)."""
LOW_LATENCY_PROBESIZE = 32_768


def llhls_argv(
    ffmpeg: str, *, hevc: bool = False, audio_only: bool = False, loglevel: str = "warning"
) -> list[str]:
    """FLV on stdin -> fragmented MP4 on stdout, for low-latency HLS (:mod:`workers.llhls`).

    - ``-movflags +frag_keyframe+empty_moov+default_base_moof``: an initialization segment
      with no samples, then a self-contained ``moof`` + ``mdat`` fragment at every keyframe and
      (``-frag_duration``) about every :data:`LOW_LATENCY_FRAGMENT_SECONDS`
      (:data:`LOW_LATENCY_AUDIO_FRAGMENT_SECONDS` with ``audio_only``); each becomes a part.
    - stdout is the media, so there is no ``-progress`` block: every fragment is the progress.
    - ``-probesize 32768``: the hub starts the feed with both sequence headers, so ffmpeg need
      not read more before the first fragment.
    - ``-tag:v hvc1`` for HEVC: ffmpeg copies it as ``hev1`` otherwise, which Apple's players
      refuse.
    """
    fragment = LOW_LATENCY_AUDIO_FRAGMENT_SECONDS if audio_only else LOW_LATENCY_FRAGMENT_SECONDS
    return [
        *input_argv(ffmpeg, loglevel=loglevel, probesize=LOW_LATENCY_PROBESIZE, progress=False),
        *(["-tag:v", "hvc1"] if hevc else []),
        "-f",
        "mp4",
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof",
        "-frag_duration",
        str(round(fragment * 1_000_000)),
        "pipe:1",
    ]


def restream_argv(
    ffmpeg: str,
    *,
    publish_url: str,
    loglevel: str = "warning",
    rw_timeout_seconds: float = 10.0,
    ca_file: str | None = None,
    tc_url: str | None = None,
) -> list[str]:
    """FLV on stdin -> FLV published to an ``rtmp://`` or ``rtmps://`` target.

    - ``-flvflags no_duration_filesize``: a live output cannot seek back to fill them in.
    - ``-rw_timeout`` (microseconds, a generic protocol option inherited by the nested
      tcp/tls connection): a target that accepts TCP and then stalls makes ffmpeg fail with
      "Connection timed out" instead of hanging forever. Do NOT use ``-timeout`` here: for the
      rtmp protocol it is the *listen* timeout and turns the output into a server.
    - ``rtmps://``: ``-tls_verify 1`` (ffmpeg 9 verifies by default, older builds did not) checks
      the certificate chain and host name; ``-ca_file`` replaces the system CA store.
    - ``-rtmp_tcurl``: the tcUrl of the RTMP ``connect`` (ffmpeg's default is
      ``proto://host:port/app`` from the URL), given when the host in ``publish_url`` is an
      address liverelay resolved from the target's name (:mod:`workers.restream_target`).
    - the scheme is handed over in lower case: ffmpeg's protocol names are case-sensitive
      ("Protocol not found" for ``RTMP://``).
    """
    scheme = urlsplit(publish_url).scheme.lower()
    if scheme not in ("rtmp", "rtmps"):
        raise ValueError(f"restream target must be rtmp:// or rtmps://, not {scheme or '?'}://")
    argv = [
        *input_argv(ffmpeg, loglevel=loglevel),
        "-f",
        "flv",
        "-flvflags",
        "no_duration_filesize",
        "-rw_timeout",
        str(round(rw_timeout_seconds * 1_000_000)),
    ]
    if scheme == "rtmps":
        argv += ["-tls_verify", "1"]
        if ca_file is not None:
            argv += ["-ca_file", ca_file]
    elif ca_file is not None:
        raise ValueError("a CA file only applies to rtmps:// targets")
    if tc_url is not None:
        argv += ["-rtmp_tcurl", tc_url]
    argv.append(scheme + publish_url[publish_url.index(":") :])
    return argv


def _seconds(value: float) -> str:
    return f"{value:g}"


# -- redaction --------------------------------------------------------------------------------

REDACTED = "***"
PARTIAL_SECRET_CHARS = 5
"""A text ending with this many or more leading characters of a secret (a line cut at a length
limit inside the secret) has that end redacted too."""

SECRET_PIECE_CHARS = 8
"""The parts of a secret split at ``/`` that are this long or longer are redacted on their own;
shorter parts (``live`` of ``live/x``) are too common to hide everywhere."""

# userinfo (RFC 3986 3.2.1) ends at the last "@" before the path, query or fragment
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]+@")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")
_PCHAR_SAFE = "/:@!$&'()*+,;="
"""What URL encoders leave alone in a path (RFC 3986 3.3 pchar, and ``/``)."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret and every ``user:password@`` part of a URL replaced by
    ``***``.

    Secrets are found by value, never by where they sit in a URL: as given, percent-encoded the
    ways URL encoders and ffmpeg write them (upper- or lower-case escapes, ``+`` for spaces),
    and percent-decoded, and so are the long parts of a secret split at ``/``. Longer forms are
    replaced first so that one secret containing another is hidden whole; a text that ends
    inside a secret (a line cut short) has that end hidden. Used on every argv, stderr line and
    error before it is logged or stored.
    """
    return _redact_forms(text, _forms(secrets))


def _forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every form of ``secrets`` to look for, longest first."""
    return tuple(sorted(_variants(secrets), key=len, reverse=True))


def _redact_forms(text: str, forms: Sequence[str]) -> str:
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return _redact_cut_end(text, forms)


def _variants(secrets: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for secret in _with_pieces(secrets):
        encoded = {
            quote(secret, safe=""),
            quote(secret, safe="/"),
            quote(secret, safe=_PCHAR_SAFE),
            quote_plus(secret),
            quote_plus(secret, safe="/"),
        }
        lower = {_PERCENT_ESCAPE.sub(lambda m: m.group().lower(), form) for form in encoded}
        found |= {secret, unquote(secret), *encoded, *lower}
    return found


def _with_pieces(secrets: Iterable[str]) -> set[str]:
    """``secrets`` and, for one with ``/`` in it, each part before and after a ``/`` of at least
    :data:`SECRET_PIECE_CHARS`: ffmpeg splits a URL's path into the RTMP application (the first
    one or two segments, shown in the tcUrl) and the playpath, so a key may show in parts."""
    found: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        found.add(secret)
        for slash in (i for i, char in enumerate(secret) if char == "/"):
            before, after = secret[:slash], secret[slash + 1 :]
            found.update(p for p in (before, after) if len(p) >= SECRET_PIECE_CHARS)
    return found


def _redact_cut_end(text: str, forms: Sequence[str]) -> str:
    end = text.rstrip("\ufffd")  # a multi-byte character cut in half decodes to U+FFFD
    last = end[-1:]
    if not last:
        return text
    for form in forms:
        # candidate prefixes end where the form has the text's last character, longest first
        i = form.rfind(last, PARTIAL_SECRET_CHARS - 1, len(form) - 1)
        while i != -1:
            if end.endswith(form[: i + 1]):
                return end[: -(i + 1)] + REDACTED
            i = form.rfind(last, PARTIAL_SECRET_CHARS - 1, i)
    return text


def make_redactor(secrets: Iterable[str]) -> Callable[[str], str]:
    """A one-argument redactor for :class:`workers.process.FFmpegProcess` and the supervisor
    (the forms of ``secrets`` are worked out once, not on every line)."""
    return partial(_redact_forms, forms=_forms(secrets))


def url_secrets(url: str) -> list[str]:
    """The secret parts of a publish URL: the password, and for ``rtmp(s)://host/app/KEY`` the
    stream key (last path segment) and any query string."""
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    path_segments = [s for s in parts.path.split("/") if s]
    if parts.scheme.lower() in ("rtmp", "rtmps") and len(path_segments) >= 2:
        found.append(path_segments[-1])
    if parts.query:
        found.append(parts.query)
    return found


def format_argv(argv: Sequence[str], redactor: Callable[[str], str]) -> str:
    """``argv`` as one shell-quoted line, redacted, for logs. Each argument is redacted before
    quoting too: quoting would split a secret containing ``'``."""
    return redactor(shlex.join(redactor(arg) for arg in argv))
