"""Several ``liverelay serve`` nodes on one PostgreSQL: stream ownership leases with fencing
generations (:mod:`api.cluster.leases`, renewed by :mod:`api.cluster.keeper`), held by the
live paths through :mod:`api.cluster.ownership`, the node registry (:mod:`api.cluster.nodes`,
heartbeat in :mod:`api.cluster.context`), and the control bus (:mod:`api.cluster.bus`) that
carries operator commands to the node a stream is live on (:mod:`api.cluster.commands`,
:mod:`api.cluster.control`). See ``docs/scaling.md``."""
