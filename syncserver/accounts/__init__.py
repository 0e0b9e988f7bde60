"""Account life-cycle beyond logging in: password reset, its codes, and the mail that carries them.

It relies only on the :class:`~syncserver.auth.AuthBackend` interface, so it
works with every authentication backend; the User API and the HTML pages
call it.
"""
