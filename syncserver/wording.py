"""Numbers in sentences for people: ``1 second``, ``2 seconds``.

One helper, so that messages never say "1 seconds" or "1 batches".
"""


def count_of(number, noun, plural=None):
    """``count_of(1, "second")`` -> ``"1 second"``; ``count_of(3, "batch", "batches")``."""
    return f"{number} {noun if number == 1 else (plural or noun + 's')}"
