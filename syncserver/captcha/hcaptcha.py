"""hCaptcha, verified server-side over HTTPS (the same protocol as reCAPTCHA v2).

Settings: ``captcha.public_key`` (site key), ``captcha.private_key`` (secret
key). See :mod:`syncserver.captcha.siteverify` for the protocol.
"""

from syncserver.captcha.siteverify import SiteVerifyCaptcha


class HCaptcha(SiteVerifyCaptcha):
    name = "hCaptcha"
    default_verify_url = "https://api.hcaptcha.com/siteverify"
    script_url = "https://js.hcaptcha.com/1/api.js"
    widget_class = "h-captcha"
