"""Storage API 1.5: info, collections, items and batch uploads (reference §3).

Each method answers one route of :mod:`syncserver.routing`; the dispatcher
has already checked the Hawk signature and that the token's uid is the
path's (``request.sync15_token``). A 1.5 uid's records live under storage
user id ``-uid`` (:func:`syncserver.storage.sync15_user_id`), so they never
meet a Sync 1.1 account's. Protocol rules come from :mod:`syncserver.protocol`
(``bso``, ``bodies15``, ``query15``, ``paging``, ``conditions``, ``limits15``);
this module orders them as the reference does:

- every 2xx, 304 and 412 carries ``X-Last-Modified`` (the target resource's
  timestamp, or T after a write); ``X-Weave-Timestamp`` is T on writes and
  ``max(now, X-Last-Modified)`` on reads, 304, 412 and 202 (batch staged);
- ``X-If-Modified-Since`` gives 304 and ``X-If-Unmodified-Since`` 412 against
  the target resource: storage for ``info/*`` and the root, the collection
  for collection URLs, the item for item URLs; on writes the storage checks
  it inside the write's transaction;
- errors have JSON integer bodies (the dispatcher adds ``0`` to those
  without a code): 400 ``8`` invalid BSO, 400 ``17`` size, 400 ``1`` bad
  value, 403 ``14`` over quota, 404 / 406 / 415 ``0``, 503 with
  ``Retry-After: 10`` for a write that collided.
"""

import contextlib
import dataclasses
import logging

from webob import Response, exc

from syncserver.errors import NotSupported
from syncserver.protocol import formats, respcodes
from syncserver.protocol.bodies15 import read_bso_list, read_bso_object
from syncserver.protocol.bso import (
    InvalidBSO,
    KnownBadPayload,
    is_known_bad_payload,
    is_valid_bso_id,
    parse_bso,
    parse_bso_list,
)
from syncserver.protocol.conditions import (
    check_declared_sizes,
    parse_batch_params,
    parse_preconditions,
)
from syncserver.protocol.formats import RawJSON, timestamp_json
from syncserver.protocol.limits15 import Limits15, split_post
from syncserver.protocol.paging import next_offset
from syncserver.protocol.query15 import parse_collection_query, parse_delete_ids, request_params
from syncserver.protocol.respcodes import error_with_code
from syncserver.protocol.timestamps import format_timestamp
from syncserver.protocol.wbo import is_valid_collection, payload_size
from syncserver.storage import (
    SYNC15_WRITES,
    BatchNotFound,
    BatchTooLarge,
    ConflictError,
    ItemQuery,
    PreconditionFailed,
    QuotaExceeded,
    UserDeleted,
    sync15_user_id,
)

logger = logging.getLogger("syncserver")

#: Below this many KB left, writes tell the client with X-Weave-Quota-Remaining (1 MiB).
QUOTA_WARNING_KB = 1024
#: Seconds a client waits before retrying a write that collided (reference §3.2).
CONFLICT_RETRY_SECONDS = 10


class Storage15Controller:
    """Answers ``/1.5/<uid>/...``; ``request.sync15_token`` is already verified."""

    def __init__(self, storage, settings, cors=None):
        self.storage = storage
        self.quota_kb = settings.storage.quota_size
        self.batch_lifetime = settings.storage.batch_lifetime_seconds
        self.limits = Limits15(
            max_request_bytes=settings.storage.max_request_bytes,
            max_post_records=settings.storage.max_post_records,
            max_post_bytes=settings.storage.max_post_bytes,
            max_total_records=settings.storage.max_total_records,
            max_total_bytes=settings.storage.max_total_bytes,
            max_record_payload_bytes=settings.storage.max_record_payload_bytes)
        self.cors = cors

    # -- info ---------------------------------------------------------------

    def get_collection_timestamps(self, request, uid):
        user_id = _user_id(request)
        stamp = self._storage_timestamp(request, user_id)
        stamps = self.storage.get_collection_timestamps(user_id)
        body = {name: timestamp_json(value) for name, value in stamps.items()}
        return _read_response(request, body, stamp, records=len(body))

    def get_collection_counts(self, request, uid):
        user_id = _user_id(request)
        stamp = self._storage_timestamp(request, user_id)
        counts = self.storage.get_collection_counts(user_id)
        return _read_response(request, counts, stamp, records=len(counts))

    def get_collection_usage(self, request, uid):
        user_id = _user_id(request)
        stamp = self._storage_timestamp(request, user_id)
        usage = {name: size / 1024.0
                 for name, size in self.storage.get_collection_usage(user_id).items()}
        return _read_response(request, usage, stamp, records=len(usage))

    def get_quota(self, request, uid):
        user_id = _user_id(request)
        stamp = self._storage_timestamp(request, user_id)
        used = self.storage.get_total_usage(user_id) / 1024.0
        own = self.storage.get_user_quota(user_id)
        quota = self.quota_kb if own is None else own
        return _read_response(request, [used, quota or None], stamp)

    def get_configuration(self, request, uid):
        stamp = self._storage_timestamp(request, _user_id(request))
        return _read_response(request, self.limits.as_info_configuration(), stamp)

    # -- reads --------------------------------------------------------------

    def get_collection(self, request, uid, collection):
        _check_collection(collection)
        parsed = parse_collection_query(request_params(request))
        preconditions = parse_preconditions(request)
        media_type = formats.choose_format_15(request.headers.get("Accept"))
        if media_type is None:
            raise error_with_code(respcodes.NO_CODE, exc.HTTPNotAcceptable)
        user_id = _user_id(request)
        stamp = self.storage.get_collection_timestamp(user_id, collection) or 0
        _check_preconditions(request, preconditions, stamp)
        query = _bounded(parsed)
        if parsed.limit is None:
            stream = self.storage.stream_items(user_id, collection, query, parsed.full)
            response = formats.records_response(stream, parsed.full, media_type)
        else:
            records = self.storage.get_items(user_id, collection, query, parsed.full)
            offset = next_offset(records, parsed, parsed.limit)
            page = records[:parsed.limit]
            response = Response(body=formats.render_records(page, parsed.full, media_type),
                                content_type=media_type, charset=None)
            response.headers["X-Weave-Records"] = str(len(page))
            if offset is not None:
                response.headers["X-Weave-Next-Offset"] = offset
        return _with_read_stamps(request, response, stamp)

    def get_item(self, request, uid, collection, item):
        _check_collection(collection)
        _check_item_id(item)
        preconditions = parse_preconditions(request)
        record = self.storage.get_item(_user_id(request), collection, item)
        stamp = record.get("modified") or 0 if record is not None else 0
        _check_preconditions(request, preconditions, stamp)
        if record is None:
            raise exc.HTTPNotFound()
        response = _json_response(RawJSON(formats.record_json(record)))
        return _with_read_stamps(request, response, stamp)

    # -- writes -------------------------------------------------------------

    def put_item(self, request, uid, collection, item):
        _check_collection(collection)
        _check_item_id(item)
        preconditions = parse_preconditions(request)
        body = read_bso_object(request, self.limits.max_request_bytes)
        try:
            bso = parse_bso(body, self.limits.max_record_payload_bytes, item_id=item)
        except InvalidBSO:
            raise error_with_code(respcodes.INVALID_WBO) from None
        if is_known_bad_payload(collection, bso.payload):
            raise error_with_code(respcodes.INVALID_WBO)
        with _write_errors(request, collection):
            result = self.storage.set_items(
                _user_id(request), collection, [bso], request.server_time,
                if_unmodified_since=preconditions.if_unmodified_since, quota_kb=self.quota_kb,
                rules=SYNC15_WRITES, precondition="item")
        response = _json_response(timestamp_json(result.timestamp))
        _quota_header(response, result.quota_left_kb, [bso])
        return _with_write_stamps(response, result.timestamp)

    def post_collection(self, request, uid, collection):
        _check_collection(collection)
        batch = parse_batch_params(request_params(request))
        check_declared_sizes(request, self.limits)
        preconditions = parse_preconditions(request)
        objects = read_bso_list(request, self.limits.max_request_bytes)
        try:
            items, failed = parse_bso_list(objects, self.limits.max_record_payload_bytes,
                                           collection)
        except KnownBadPayload:
            raise error_with_code(respcodes.INVALID_WBO) from None
        accepted, retry = split_post(items, self.limits)
        failed.update(retry)
        success = [item.id for item in accepted]
        user_id = _user_id(request)
        since = preconditions.if_unmodified_since
        now = request.server_time
        with _write_errors(request, collection):
            if batch.new_batch and not batch.commit:
                try:
                    return self._open_batch(request, user_id, collection, accepted, since,
                                            success, failed)
                except NotSupported:
                    pass  # a backend without batches: a plain POST, as §3.10 says
            if batch.batch_id is not None and not batch.commit:
                return self._append(request, user_id, collection, batch.batch_id, accepted,
                                    since, success, failed)
            if batch.batch_id is not None:
                result = self.storage.commit_batch(
                    user_id, collection, batch.batch_id, accepted, now,
                    if_unmodified_since=since, quota_kb=self.quota_kb,
                    max_total_records=self.limits.max_total_records,
                    max_total_bytes=self.limits.max_total_bytes)
            elif accepted:
                result = self.storage.set_items(
                    user_id, collection, accepted, now, if_unmodified_since=since,
                    quota_kb=self.quota_kb, rules=SYNC15_WRITES)
            else:
                stamp = self.storage.get_collection_timestamp(user_id, collection) or 0
                if since is not None and stamp > since:
                    raise PreconditionFailed(stamp)
                result = None
        timestamp = result.timestamp if result is not None else now
        response = _json_response({"modified": timestamp_json(timestamp), "success": success,
                                   "failed": failed})
        if result is not None:
            _quota_header(response, result.quota_left_kb, accepted)
        return _with_write_stamps(response, timestamp)

    def _open_batch(self, request, user_id, collection, items, since, success, failed):
        stamp = self.storage.get_collection_timestamp(user_id, collection) or 0
        if since is not None and stamp > since:
            raise PreconditionFailed(stamp)
        batch_id = self.storage.create_batch(user_id, collection, request.server_time,
                                             self.batch_lifetime)
        if items:
            self._stage(user_id, collection, batch_id, items, request.server_time)
        return _batch_response(request, batch_id, success, failed, stamp)

    def _append(self, request, user_id, collection, batch_id, items, since, success, failed):
        stamp = self.storage.get_collection_timestamp(user_id, collection) or 0
        if since is not None and stamp > since:
            raise PreconditionFailed(stamp)
        self._stage(user_id, collection, batch_id, items, request.server_time)
        return _batch_response(request, batch_id, success, failed, stamp)

    def _stage(self, user_id, collection, batch_id, items, now):
        self.storage.append_to_batch(
            user_id, collection, batch_id, items, now, quota_kb=self.quota_kb,
            max_total_records=self.limits.max_total_records,
            max_total_bytes=self.limits.max_total_bytes)

    # -- deletes ------------------------------------------------------------

    def delete_collection(self, request, uid, collection):
        _check_collection(collection)
        ids = parse_delete_ids(request_params(request))
        preconditions = parse_preconditions(request)
        user_id = _user_id(request)
        since = preconditions.if_unmodified_since
        with _write_errors(request, collection):
            if ids is None:
                stamp = self.storage.delete_collection(user_id, collection, request.server_time,
                                                       if_unmodified_since=since)
            else:
                stamp = self.storage.delete_items(
                    user_id, collection, ItemQuery(ids=ids), request.server_time,
                    if_unmodified_since=since, stamp_always=True)
        stamp = stamp or request.server_time
        return _with_write_stamps(_json_response({"modified": timestamp_json(stamp)}), stamp)

    def delete_item(self, request, uid, collection, item):
        _check_collection(collection)
        _check_item_id(item)
        preconditions = parse_preconditions(request)
        with _write_errors(request, collection):
            stamp = self.storage.delete_item(
                _user_id(request), collection, item, request.server_time,
                if_unmodified_since=preconditions.if_unmodified_since, precondition="item")
        if stamp is None:
            raise exc.HTTPNotFound()
        return _with_write_stamps(_json_response({"modified": timestamp_json(stamp)}), stamp)

    def delete_storage(self, request, uid):
        preconditions = parse_preconditions(request)
        with _write_errors(request, "storage"):
            stamp = self.storage.delete_storage(
                _user_id(request), request.server_time,
                if_unmodified_since=preconditions.if_unmodified_since)
        stamp = stamp or request.server_time
        return _with_write_stamps(_json_response({}), stamp)

    # -- CORS ---------------------------------------------------------------

    def preflight(self, request):
        """``OPTIONS`` on any 1.5 path: the CORS answer (204; headers only for allowed origins)."""
        if self.cors is None:
            return Response(status=204)
        return self.cors.preflight(request)

    # -- shared -------------------------------------------------------------

    def _storage_timestamp(self, request, user_id):
        """The storage's timestamp, after the info/* preconditions (304 / 412) are checked."""
        stamp = self.storage.get_storage_timestamp(user_id)
        _check_preconditions(request, parse_preconditions(request), stamp)
        return stamp


def _user_id(request):
    return sync15_user_id(request.sync15_token.uid)


def _check_collection(collection):
    if not is_valid_collection(collection):
        raise exc.HTTPNotFound()


def _check_item_id(item_id):
    if not is_valid_bso_id(item_id):
        raise exc.HTTPNotFound()


def _bounded(parsed):
    """The storage query of a parsed GET, with the offset token's inclusive bound."""
    query = parsed.query
    if parsed.modified_at_most is None and parsed.modified_at_least is None:
        return query
    return dataclasses.replace(query, modified_at_most=parsed.modified_at_most,
                               modified_at_least=parsed.modified_at_least)


def _check_preconditions(request, preconditions, stamp):
    """304 when not modified since, 412 when modified since; both carry the read stamps."""
    if preconditions.not_modified(stamp):
        raise _with_read_stamps(request, exc.HTTPNotModified(), stamp)
    if preconditions.precondition_failed(stamp):
        raise _precondition_failed(request, stamp)


def _precondition_failed(request, stamp):
    error = error_with_code(respcodes.NO_CODE, exc.HTTPPreconditionFailed)
    return _with_read_stamps(request, error, stamp)


@contextlib.contextmanager
def _write_errors(request, collection):
    """The storage's refusals of a write, as 1.5 answers them (nothing was written)."""
    try:
        yield
    except PreconditionFailed as error:
        raise _precondition_failed(request, error.timestamp) from None
    except QuotaExceeded:
        raise error_with_code(respcodes.OVER_QUOTA, exc.HTTPForbidden) from None
    except BatchTooLarge:
        raise error_with_code(respcodes.SIZE_LIMIT_EXCEEDED) from None
    except (BatchNotFound, NotSupported):
        # An unknown batch, or a batch id sent to a backend without batches.
        raise error_with_code(respcodes.BAD_VALUE) from None
    except UserDeleted:
        raise error_with_code(respcodes.NO_CODE, exc.HTTPUnauthorized) from None
    except ConflictError as error:
        logger.warning("1.5 write to %r collided, client told to retry: %s", collection, error)
        refusal = error_with_code(respcodes.NO_CODE, exc.HTTPServiceUnavailable)
        refusal.headers["Retry-After"] = str(CONFLICT_RETRY_SECONDS)
        raise refusal from None


def _json_response(value):
    return Response(body=formats.dumps(value).encode("ascii"),
                    content_type=formats.JSON, charset=None)


def _read_response(request, value, stamp, records=None):
    response = _json_response(value)
    if records is not None:
        response.headers["X-Weave-Records"] = str(records)
    return _with_read_stamps(request, response, stamp)


def _batch_response(request, batch_id, success, failed, stamp):
    """202: nothing visible was written, so the collection's stamps are read ones."""
    response = _json_response({"batch": batch_id, "success": success, "failed": failed})
    response.status = 202
    return _with_read_stamps(request, response, stamp)


def _with_read_stamps(request, response, stamp):
    """``X-Last-Modified: stamp`` and ``X-Weave-Timestamp: max(now, stamp)``: a write's T
    may be ahead of the clock (one centisecond past the last), and no answer may give
    a server time before a modified time it names."""
    response.headers["X-Last-Modified"] = format_timestamp(stamp)
    response.headers["X-Weave-Timestamp"] = format_timestamp(max(request.server_time, stamp))
    return response


def _with_write_stamps(response, stamp):
    response.headers["X-Last-Modified"] = format_timestamp(stamp)
    response.headers["X-Weave-Timestamp"] = format_timestamp(stamp)
    return response


def _quota_header(response, quota_left_kb, written):
    """``X-Weave-Quota-Remaining``: KB left once ``written`` is stored, when under 1 MiB."""
    if quota_left_kb is None:
        return
    left = quota_left_kb - sum(payload_size(item) for item in written) / 1024.0
    if left < QUOTA_WARNING_KB:
        response.headers["X-Weave-Quota-Remaining"] = f"{max(left, 0.0):.2f}"
