"""Several ``liverelay serve`` nodes on one PostgreSQL: stream ownership leases with fencing
generations (:mod:`api.cluster.leases`, renewed by :mod:`api.cluster.keeper`), held by the
live paths through :mod:`api.cluster.ownership`, and the node registry
(:mod:`api.cluster.nodes`, heartbeat in :mod:`api.cluster.context`). See ``docs/scaling.md``."""
