"""The captcha plugin interface, used when ``captcha.use`` is true.

Registration (``PUT /user/1.0/<u>``) asks the configured backend to verify
the ``captcha-challenge`` / ``captcha-response`` fields of its body, and
``/misc/1.0/captcha_html`` serves the backend's widget, which the Firefox
setup wizard embeds. The bundled backends (``recaptcha``, ``hcaptcha``)
verify over HTTPS with the provider's ``siteverify`` endpoint; a user's own
class, named by dotted path in ``captcha.backend``, implements
:class:`CaptchaBackend`.
"""

import abc

from syncserver.errors import BackendUnavailable
from syncserver.plugins import Plugin


class CaptchaUnavailable(BackendUnavailable):
    """The captcha provider did not answer, or answered nonsense (503)."""

    service = "captcha"


class CaptchaBackend(Plugin, abc.ABC):
    """What a captcha backend must provide.

    Built once per process with :meth:`from_settings`; :meth:`verify` is
    called from many threads at once.
    """

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings):
        """Build the backend from a :class:`syncserver.settings.CaptchaSettings`.

        Raise :class:`syncserver.errors.ConfigError` for a missing key.
        """

    @abc.abstractmethod
    def html(self):
        """The HTML page served at ``/misc/1.0/captcha_html`` (a ``str``)."""

    @abc.abstractmethod
    def verify(self, challenge, response, remote_address):
        """True if the person solved the captcha, False if not.

        ``challenge`` and ``response`` are the client's strings (``challenge``
        may be None: token-based captchas need only the response);
        ``remote_address`` is the client's address. Raises
        :class:`CaptchaUnavailable` when the provider cannot be asked.
        """

    def close(self):
        """Release resources. The default does nothing."""
