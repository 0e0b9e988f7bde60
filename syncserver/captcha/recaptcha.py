"""Google reCAPTCHA v2 ("I'm not a robot"), verified server-side over HTTPS.

Settings: ``captcha.public_key`` (site key), ``captcha.private_key`` (secret
key). See :mod:`syncserver.captcha.siteverify` for the protocol.
"""

from syncserver.captcha.siteverify import SiteVerifyCaptcha


class ReCaptcha(SiteVerifyCaptcha):
    name = "reCAPTCHA"
    default_verify_url = "https://www.google.com/recaptcha/api/siteverify"
    script_url = "https://www.google.com/recaptcha/api.js"
    widget_class = "g-recaptcha"
