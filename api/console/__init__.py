"""The operator console: a browser sign-in that ends in a session cookie
(:mod:`api.console.sessions`), and the static pages served at ``/console/``
(:mod:`api.console.routes`)."""
