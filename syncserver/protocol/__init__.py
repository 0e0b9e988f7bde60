"""Protocol rules of Sync 1.1, each in one module, shared by every controller.

- :mod:`.timestamps`: exact two-decimal timestamps (integer centiseconds).
- :mod:`.wbo`: validation of Weave Basic Objects sent by clients.
- :mod:`.query`: parsing of collection query strings.
- :mod:`.formats`: JSON, newlines and whoisi output.
- :mod:`.respcodes`: Weave error codes and the responses that carry them.
"""
