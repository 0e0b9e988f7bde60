"""Storage API 1.1: info, collections, items (reference §2, PROTOCOL.md decisions).

Each method answers one route of :mod:`syncserver.routing` by calling the
:class:`~syncserver.storage.StorageBackend` interface. Protocol rules come
from :mod:`syncserver.protocol`; this module only orders them as the
protocol says (quota, then ``X-If-Unmodified-Since``, then the body).

The quota is checked by the backend inside the write (``set_items`` with
``quota_kb``), so a write costs no extra query; only a write refused before
it reaches the backend (an invalid body, a bad header) asks the backend's
:meth:`~syncserver.storage.StorageBackend.check_quota` first, so that an
over-quota user still hears "over quota" first, as in Sync 1.1.

Multi-record GETs are streamed: the backend's
:meth:`~syncserver.storage.StorageBackend.stream_items` gives the count (for
``X-Weave-Records``) and then the records in chunks, which the response
renders as the client reads (a WebOb ``app_iter``); small answers are
rendered in one piece as before.
"""

import contextlib
import logging

from webob import Response, exc

from syncserver.controllers.bodies import read_json_body
from syncserver.protocol import formats, respcodes
from syncserver.protocol.formats import RawJSON, timestamp_json
from syncserver.protocol.query import parse_item_query, query_parameters, wants_full_records
from syncserver.protocol.respcodes import WeaveError
from syncserver.protocol.timestamps import format_timestamp, parse_timestamp
from syncserver.protocol.wbo import (
    InvalidWBO,
    is_valid_collection,
    is_valid_item_id,
    item_id_of,
    parse_wbo,
    payload_size,
)
from syncserver.storage import ConflictError, PreconditionFailed, QuotaExceeded, UserDeleted

logger = logging.getLogger("syncserver")

#: Below this many KB left, writes tell the client with X-Weave-Quota-Remaining.
QUOTA_WARNING_KB = 1024


class StorageController:
    """Answers ``/1.1/<username>/...``; ``request.sync_user`` is already authenticated."""

    def __init__(self, storage, settings):
        self.storage = storage
        self.settings = settings

    # -- info -------------------------------------------------------------

    def get_collection_timestamps(self, request, username):
        stamps = self.storage.get_collection_timestamps(request.sync_user.user_id)
        return _info_response(request, {name: timestamp_json(ts) for name, ts in stamps.items()})

    def get_collection_counts(self, request, username):
        counts = self.storage.get_collection_counts(request.sync_user.user_id)
        return _info_response(request, counts)

    def get_collection_usage(self, request, username):
        usage = self.storage.get_collection_usage(request.sync_user.user_id)
        return _json_response({name: size / 1024.0 for name, size in usage.items()})

    def get_quota(self, request, username):
        """Live usage (expired items not counted) and the quota that applies."""
        user_id = request.sync_user.user_id
        used = self.storage.get_total_usage(user_id) / 1024.0
        return _json_response([used, self._quota_kb(user_id) or None])

    # -- reads ------------------------------------------------------------

    def get_collection(self, request, username, collection):
        if not is_valid_collection(collection):
            raise exc.HTTPNotFound("Invalid collection name.")
        params = query_parameters(request)
        query = parse_item_query(params)
        full = wants_full_records(params)
        media_type = formats.choose_format(request.headers.get("Accept"))
        stream = self.storage.stream_items(request.sync_user.user_id, collection, query, full)
        return formats.records_response(stream, full, media_type)

    def get_item(self, request, username, collection, item):
        if not (is_valid_collection(collection) and is_valid_item_id(item)):
            raise exc.HTTPNotFound()
        record = self.storage.get_item(request.sync_user.user_id, collection, item)
        if record is None:
            raise exc.HTTPNotFound()
        return _json_response(RawJSON(formats.record_json(record)))

    # -- writes -----------------------------------------------------------

    def put_item(self, request, username, collection, item):
        if not is_valid_collection(collection):
            raise WeaveError(respcodes.INVALID_COLLECTION)
        if not is_valid_item_id(item):
            raise WeaveError(respcodes.INVALID_WBO)
        with self._quota_first(request):
            since = _if_unmodified_since(request)
            try:
                body = read_json_body(request, self.settings.max_request_bytes)
                wbo = parse_wbo(body, self.settings.max_payload_bytes, item_id=item)
            except (WeaveError, InvalidWBO) as error:
                self._check_precondition_first(request, collection, since)
                if isinstance(error, InvalidWBO):
                    raise WeaveError(respcodes.INVALID_WBO) from None
                raise
        return self._store_one(request, collection, wbo, since)

    def post_collection(self, request, username, collection):
        if not is_valid_collection(collection):
            raise WeaveError(respcodes.INVALID_COLLECTION)
        since = _if_unmodified_since(request)
        try:
            body = read_json_body(request, self.settings.max_request_bytes)
        except WeaveError:
            self._check_precondition_first(request, collection, since)
            raise
        if not isinstance(body, list):
            return self._post_one(request, collection, body, since)

        items, success, failed = self._validate_batch(body)
        user_id = request.sync_user.user_id
        if items:
            result = self._write(user_id, collection, items, request.server_time, since)
            timestamp, quota_left = result.timestamp, result.quota_left_kb
        else:
            quota_left = self._quota_left(request)
            self._check_precondition_first(request, collection, since)
            timestamp = request.server_time
        response = _json_response(
            {"modified": timestamp_json(timestamp), "success": success, "failed": failed},
            timestamp)
        _add_quota_header(response, quota_left)
        return response

    def _post_one(self, request, collection, body, since):
        """A POST (or PUT) of one object to the collection URL is a PUT of that item."""
        item_id = item_id_of(body)
        if item_id is None or not is_valid_item_id(item_id):
            raise WeaveError(respcodes.INVALID_WBO)
        with self._quota_first(request):
            try:
                wbo = parse_wbo(body, self.settings.max_payload_bytes, item_id=item_id)
            except InvalidWBO:
                raise WeaveError(respcodes.INVALID_WBO) from None
        return self._store_one(request, collection, wbo, since)

    def _store_one(self, request, collection, wbo, since):
        result = self._write(request.sync_user.user_id, collection, [wbo],
                             request.server_time, since)
        modified = result.modified.get(wbo.id)
        body = timestamp_json(modified) if modified is not None else None
        response = _json_response(body, result.timestamp)
        _add_quota_header(response, result.quota_left_kb)
        return response

    def _validate_batch(self, objects):
        """Split a POSTed list into storable items and ``failed`` reasons (reference §2.7.5)."""
        items, success, failed = [], [], {}
        total_bytes = 0
        for index, obj in enumerate(objects):
            try:
                wbo = parse_wbo(obj, self.settings.max_payload_bytes)
            except InvalidWBO as error:
                item_id = item_id_of(obj)
                failed[item_id if item_id is not None else ""] = [error.reason]
                continue
            if index >= self.settings.batch_max_count:
                failed[wbo.id] = ["retry wbo"]
                continue
            total_bytes += payload_size(wbo)
            if total_bytes >= self.settings.batch_max_bytes:
                failed[wbo.id] = ["retry bytes"]
                continue
            items.append(wbo)
            success.append(wbo.id)
        return items, success, failed

    def _write(self, user_id, collection, items, now, since):
        """One write; the backend checks the quota (storage.quota_size by default) inside it."""
        with _write_errors_as_http(collection):
            return self.storage.set_items(user_id, collection, items, now,
                                          if_unmodified_since=since,
                                          quota_kb=self.settings.quota_size)

    # -- deletes ----------------------------------------------------------

    def delete_collection(self, request, username, collection):
        if not is_valid_collection(collection):
            raise exc.HTTPNotFound("Invalid collection name.")
        query = parse_item_query(query_parameters(request))
        since = _if_unmodified_since(request)
        with _write_errors_as_http(collection):
            timestamp = self.storage.delete_items(
                request.sync_user.user_id, collection, query, request.server_time, since)
        return _timestamp_response(timestamp or request.server_time)

    def delete_item(self, request, username, collection, item):
        since = _if_unmodified_since(request)
        timestamp = None
        if is_valid_collection(collection) and is_valid_item_id(item):
            with _write_errors_as_http(collection):
                timestamp = self.storage.delete_item(
                    request.sync_user.user_id, collection, item, request.server_time, since)
        return _timestamp_response(timestamp or request.server_time)

    def delete_storage(self, request, username):
        if not request.headers.get("X-Confirm-Delete"):
            raise WeaveError(respcodes.OVERWRITE_NOT_ALLOWED)
        with _write_errors_as_http("storage"):
            self.storage.delete_storage(request.sync_user.user_id, request.server_time)
        return _timestamp_response(request.server_time)

    # -- shared checks ----------------------------------------------------

    def _quota_kb(self, user_id):
        """The user's quota in KB (0: none): their own (``set-quota``), else storage.quota_size."""
        own = self.storage.get_user_quota(user_id)
        return self.settings.quota_size if own is None else own

    def _quota_left(self, request):
        """KB left (None: no quota), or 400 code 14: for answers refused before any write."""
        try:
            return self.storage.check_quota(request.sync_user.user_id, self.settings.quota_size)
        except QuotaExceeded:
            raise WeaveError(respcodes.OVER_QUOTA) from None

    @contextlib.contextmanager
    def _quota_first(self, request):
        """A write refused before reaching the backend still answers "over quota" first."""
        try:
            yield
        except exc.HTTPException:
            self._quota_left(request)
            raise

    def _check_precondition_first(self, request, collection, since):
        """A stale ``X-If-Unmodified-Since`` wins over a bad body, as in the reference."""
        if since is None:
            return
        current = self.storage.get_collection_timestamp(request.sync_user.user_id, collection)
        if current is not None and current > since:
            raise exc.HTTPPreconditionFailed(collection)


@contextlib.contextmanager
def _write_errors_as_http(collection):
    """The backend's refusals of a write, as the protocol answers them (nothing was written).

    QuotaExceeded is 400 with code 14, PreconditionFailed is 412.
    ConflictError (the write collided with a concurrent change the backend
    could not order) is 400 with code 4, as the storage interface
    documents, and never a 500. UserDeleted (the account was deleted while
    this request was on its way) is the 401 its credentials now get.
    """
    try:
        yield
    except UserDeleted:
        raise exc.HTTPUnauthorized() from None
    except QuotaExceeded:
        raise WeaveError(respcodes.OVER_QUOTA) from None
    except PreconditionFailed:
        raise exc.HTTPPreconditionFailed(collection) from None
    except ConflictError as error:
        logger.warning("write to %r refused: %s", collection, error)
        raise WeaveError(respcodes.OVERWRITE_NOT_ALLOWED) from None


def _if_unmodified_since(request):
    value = request.headers.get("X-If-Unmodified-Since")
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise exc.HTTPBadRequest('Invalid value for "X-If-Unmodified-Since"') from None


def _json_response(value, timestamp=None):
    response = Response(body=formats.dumps(value).encode("ascii"),
                        content_type=formats.JSON, charset=None)
    if timestamp is not None:
        response.headers["X-Weave-Timestamp"] = format_timestamp(timestamp)
    return response


def _timestamp_response(timestamp):
    return _json_response(timestamp_json(timestamp), timestamp)


def _info_response(request, mapping):
    """info/collections and info/collection_counts honour Accept (keys for non-JSON formats)."""
    media_type = formats.choose_format(request.headers.get("Accept"))
    if media_type == formats.JSON:
        body = formats.dumps(mapping).encode("ascii")
    else:
        body = formats.render_encoded([formats.dumps(name) for name in mapping], media_type)
    response = Response(body=body, content_type=media_type, charset=None)
    response.headers["X-Weave-Records"] = str(len(mapping))
    return response


def _add_quota_header(response, quota_left):
    if quota_left is not None and quota_left <= QUOTA_WARNING_KB:
        response.headers["X-Weave-Quota-Remaining"] = repr(float(quota_left))
