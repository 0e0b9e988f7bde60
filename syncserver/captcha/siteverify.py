"""Token captchas verified by a ``siteverify`` HTTPS call (reCAPTCHA v2, hCaptcha).

Both providers speak the same protocol: the widget in the browser yields a
token (the client sends it as ``captcha-response``); the server POSTs
``secret``, ``response`` and ``remoteip`` as a form to the provider and reads
``success`` from the JSON answer. Only the endpoint, the widget's script and
its CSS class differ, so each provider module is a small subclass.

TLS certificates are always verified (against the system's CAs, or
``captcha.ca_file``). ``captcha.verify_url`` may point at another endpoint
(an on-premise proxy, a test double).
"""

import html
import json
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request

from syncserver.captcha import CaptchaBackend, CaptchaUnavailable
from syncserver.errors import ConfigError

logger = logging.getLogger(__name__)

#: A token is a few hundred characters; anything much longer is not one.
MAX_RESPONSE_LENGTH = 8192

# The wizard of Firefox <= 28 reads these two fields from the embedded page;
# the widget's callback copies the token into the second one.
PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>Captcha</title>
<script src="{script_url}" async defer></script>
<script>
function syncserverCaptchaSolved(token) {{
  document.getElementById("recaptcha_response_field").value = token;
}}
</script>
</head>
<body>
<form method="post" action="">
<div class="{widget_class}" data-sitekey="{site_key}" data-callback="syncserverCaptchaSolved"></div>
<input type="hidden" id="recaptcha_challenge_field" name="recaptcha_challenge_field" value="token">
<input type="hidden" id="recaptcha_response_field" name="recaptcha_response_field" value="">
</form>
</body>
</html>
"""


class SiteVerifyCaptcha(CaptchaBackend):
    """A captcha verified by POSTing the token to ``verify_url``; see the module docstring."""

    #: Set by each provider.
    default_verify_url = None
    script_url = None
    widget_class = None
    name = "captcha"

    def __init__(self, public_key, private_key, verify_url=None, timeout=5, ca_file=None):
        self.public_key = public_key
        self._private_key = private_key
        self.verify_url = verify_url or self.default_verify_url
        if not self.verify_url.startswith(("https://", "http://")):
            raise ConfigError(f"captcha.verify_url must be an http(s) URL, not {verify_url!r}.")
        self.timeout = timeout
        try:
            self._tls = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"captcha.ca_file cannot be used: {error}") from None

    @classmethod
    def from_settings(cls, settings):
        for key in ("public_key", "private_key"):
            if not getattr(settings, key):
                raise ConfigError(
                    f"captcha.{key} is required when captcha.use is true ({cls.name}).")
        return cls(settings.public_key, settings.private_key, verify_url=settings.verify_url,
                   timeout=settings.timeout, ca_file=settings.ca_file)

    def html(self):
        return PAGE.format(script_url=self.script_url, widget_class=self.widget_class,
                           site_key=html.escape(self.public_key, quote=True))

    def verify(self, challenge, response, remote_address):
        if not isinstance(response, str) or not response or len(response) > MAX_RESPONSE_LENGTH:
            return False
        fields = {"secret": self._private_key, "response": response}
        if remote_address and remote_address != "-":
            fields["remoteip"] = remote_address
        answer = self._post(fields)
        if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool):
            raise CaptchaUnavailable(f"{self.name} answered without a success flag")
        if not answer["success"]:
            logger.info("%s refused a response: %s", self.name, answer.get("error-codes"))
        return answer["success"]

    def _post(self, fields):
        body = urllib.parse.urlencode(fields).encode("ascii")
        request = urllib.request.Request(
            self.verify_url, data=body, method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._tls) as reply:
                return json.loads(reply.read(64 * 1024))
        except (urllib.error.URLError, OSError, ValueError) as error:
            # The message names the URL and the failure, never the secret (it is in the body).
            raise CaptchaUnavailable(
                f"{self.name} verification at {self.verify_url} failed: {error}") from None
