"""Whether another installed distribution also provides one of liverelay's top-level packages.

liverelay installs its packages (``api``, ``config``, ``ingest``, ``workers``, ``migrations``)
at the top of site-packages, under the names of the repository's folders
(``docs/decisions.md``, decision 7). Two distributions that install the same top-level name in
one environment overwrite each other's files, so ``liverelay serve`` looks for that at start-up
and names the other distribution instead of failing later in an unrelated import.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence

DISTRIBUTION = "liverelay"
TOP_LEVEL_PACKAGES = ("api", "config", "ingest", "workers", "migrations")


def shared_top_level_packages(
    provided: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[str]]:
    """Each of our top-level packages that another distribution also provides, with the names
    of those distributions (``provided`` defaults to what is installed: top-level name →
    distributions)."""
    if provided is None:
        provided = importlib.metadata.packages_distributions()
    shared: dict[str, list[str]] = {}
    for name in TOP_LEVEL_PACKAGES:
        others = sorted({d for d in provided.get(name, ()) if _normal(d) != DISTRIBUTION})
        if others:
            shared[name] = others
    return shared


def describe_shared(shared: Mapping[str, Sequence[str]]) -> str:
    """One line telling the operator what collides and what to do about it."""
    parts = ", ".join(f"'{name}' (also from {', '.join(d)})" for name, d in shared.items())
    return (
        f"other installed distributions provide liverelay's top-level packages: {parts}; their "
        "files overwrite each other, so install liverelay in its own virtual environment or "
        "container (README: The two commands)"
    )


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
