"""Background work each node runs with the app, driven by what the database says: carrying out
deletions (:mod:`~api.jobs.deletion`) and pruning old deliveries and sessions
(:mod:`~api.jobs.retention`).
"""
