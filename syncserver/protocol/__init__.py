"""Protocol rules of Sync 1.1 and Storage 1.5, each in one module, shared by every controller.

- :mod:`.timestamps`: exact two-decimal timestamps (integer centiseconds).
- :mod:`.wbo`: validation of Weave Basic Objects sent by clients.
- :mod:`.query`: parsing of collection query strings.
- :mod:`.formats`: JSON, newlines and whoisi output.
- :mod:`.respcodes`: Weave error codes and the responses that carry them.
- :mod:`.request_body`: size-limited body reading and strict JSON decoding.

Storage 1.5 (``sync15-reference.md``; the 1.1 modules above stay as they are):

- :mod:`.bso`: validation of Basic Storage Objects.
- :mod:`.bodies15`: Content-Type, size limit and framing of PUT/POST bodies.
- :mod:`.query15`: collection query strings; :mod:`.paging`: offset tokens.
- :mod:`.conditions`: X-If-* preconditions, declared sizes, batch parameters.
- :mod:`.limits15`: info/configuration limits and the per-POST split.
- :func:`.formats.choose_format_15`: JSON or newlines from ``Accept``.
- :mod:`.tokens`: the tokens of the tokenserver, as storage nodes check them.
"""
