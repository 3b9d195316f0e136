"""Finding the ffmpeg binary and asking it for its version.

Resolution order: ``Settings.ffmpeg`` (must exist and be executable), then the binary bundled
with imageio-ffmpeg, then ``ffmpeg`` on ``PATH``.
"""

from __future__ import annotations

import asyncio
import os
import shutil

from config.settings import Settings


class FFmpegNotFound(RuntimeError):
    """No usable ffmpeg binary; the message says where liverelay looked."""


def resolve_ffmpeg(settings: Settings) -> str:
    """Return the path of the ffmpeg binary to run.

    An explicit ``settings.ffmpeg`` wins and must point at an executable file (a bare name such
    as ``ffmpeg`` is looked up on ``PATH``); otherwise the imageio-ffmpeg binary, then
    ``ffmpeg`` on ``PATH``. Raises :class:`FFmpegNotFound` when none is usable.
    """
    if settings.ffmpeg:
        return _explicit(settings.ffmpeg)
    bundled = _bundled()
    if bundled is not None:
        return bundled
    on_path = shutil.which("ffmpeg")
    if on_path is not None:
        return on_path
    raise FFmpegNotFound(
        "ffmpeg not found: LIVERELAY_FFMPEG is not set, imageio-ffmpeg has no binary for this "
        "platform and there is no 'ffmpeg' on PATH"
    )


def _explicit(configured: str) -> str:
    path = configured if os.sep in configured else shutil.which(configured)
    if path is None or not os.path.isfile(path):
        raise FFmpegNotFound(f"LIVERELAY_FFMPEG={configured!r} does not exist")
    if not os.access(path, os.X_OK):
        raise FFmpegNotFound(f"LIVERELAY_FFMPEG={configured!r} is not executable")
    return path


def _bundled() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    try:
        path = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:  # no binary for this platform and none configured for imageio
        return None
    return str(path) if os.access(path, os.X_OK) else None


async def ffmpeg_version(path: str, *, answer_within: float = 10.0) -> str:
    """The first line of ``ffmpeg -version`` (e.g. ``ffmpeg version n9.0.2 ...``).

    Raises :class:`FFmpegNotFound` when the binary cannot run or does not answer in time.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            path,
            "-hide_banner",
            "-version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        raise FFmpegNotFound(f"cannot run ffmpeg at {path!r}: {exc}") from exc
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), answer_within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise FFmpegNotFound(
            f"ffmpeg at {path!r} did not answer -version within {answer_within} s"
        ) from None
    first = out.decode("utf-8", "replace").splitlines()[:1]
    if proc.returncode != 0 or not first:
        raise FFmpegNotFound(f"ffmpeg at {path!r} -version exited with code {proc.returncode}")
    return first[0].strip()
