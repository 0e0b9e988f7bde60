"""Listing the accounts of an LDAP directory, for ``syncserver-admin user list`` and ``stats``.

A directory cannot be asked for "the next 500 usernames after bob" (sorting
needs an overlay most servers lack), so a listing reads the usernames of
every entry that ``auth.user_filter`` can match, sorts them here and keeps
one page. The read is paged (RFC 2696 Simple Paged Results) when the server
offers it, so its own size limit does not cut the list short; otherwise it
is one search of at most :data:`MAX_UNPAGED_ENTRIES` entries.

The filter that matches every account is ``auth.user_filter`` with
``{username}`` replaced by a bare ``*`` — the only place where the
placeholder is *not* filled with an escaped value (:func:`match_all_filter`).
"""

import re

import ldap
from ldap.controls import SimplePagedResultsControl

from syncserver.auth import User
from syncserver.auth.ldap_connections import directory_errors
from syncserver.auth.usernames import is_valid_username

PAGED_RESULTS_OID = SimplePagedResultsControl.controlType
#: Entries read per page of a paged search.
SEARCH_PAGE_SIZE = 500
#: Without paged results, a directory with more entries than this cannot be listed.
MAX_UNPAGED_ENTRIES = 10_000

_PLACEHOLDER = "{username}"
#: ``(attribute={username})`` inside a filter: that attribute holds the username.
_EQUALITY_TERM = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9-]*)\s*=\s*\{username\}\s*\)")


class DirectoryListing:
    """``list_users`` and ``count_users`` of :class:`syncserver.auth.ldap.LDAPAuth`.

    A mixin: it uses the backend's ``pool``, ``users_base_dn``, filters,
    attribute names, ``_user_id`` and ``_features``.
    """

    def list_users(self, after=None, limit=100):
        entries = self._listable_entries()
        names = sorted(name for name in entries if after is None or name > after)
        page = names[:max(int(limit), 0)]
        enabled = self._enabled_dns() if page and self.enabled_filter else None
        users = []
        for name in page:
            dn, attributes = entries[name]
            users.append(User(user_id=self._user_id(name, dn, attributes), username=name,
                              email=first_value(attributes, self.mail_attribute),
                              enabled=enabled is None or dn.lower() in enabled))
        return users

    def count_users(self):
        return len(self._listable_entries())

    def _listable_entries(self):
        """``{username: (dn, attributes)}`` of the accounts that can log in to Sync.

        Like :meth:`get_user`: invalid usernames, usernames on several entries
        and (with ``auth.uid_number_attribute``) entries without an id are left out.
        """
        attribute = username_attribute(self.user_filter, self.username_attribute)
        found, seen_twice = {}, set()
        for dn, attributes in search_everything(
                self.pool, self.users_base_dn, match_all_filter(self.user_filter),
                [attribute] + self.attributes, self.timeout, self._pages_results()):
            name = first_value(attributes, attribute)
            if name is None or not is_valid_username(name):
                continue
            if self.uid_number_attribute and not _positive(
                    first_value(attributes, self.uid_number_attribute)):
                continue
            if name in found:
                seen_twice.add(name)
            found[name] = (dn, attributes)
        for name in seen_twice:
            del found[name]
        return found

    def _enabled_dns(self):
        """Lower-cased DNs of the accounts ``auth.enabled_filter`` accepts: one search."""
        filterstr = f"(&{match_all_filter(self.user_filter)}{self.enabled_filter})"
        return {dn.lower() for dn, _ in search_everything(
            self.pool, self.users_base_dn, filterstr, ["1.1"], self.timeout,
            self._pages_results())}

    def _pages_results(self):
        if self._paged_results_supported is None:
            self._paged_results_supported = PAGED_RESULTS_OID in self._features()
        return self._paged_results_supported


def match_all_filter(user_filter):
    """``user_filter`` matching every entry it could match for some username.

    The placeholder becomes ``*`` (a presence/substring match) on purpose and
    unescaped: nothing from a request goes into this filter, only the
    operator's own setting.
    """
    return user_filter.replace(_PLACEHOLDER, "*")


def username_attribute(user_filter, default):
    """The attribute compared with ``{username}`` in the filter, else ``default``."""
    match = _EQUALITY_TERM.search(user_filter)
    return match.group(1) if match else default


def search_everything(pool, base_dn, filterstr, attributes, timeout, paged):
    """Every ``(dn, attributes)`` under ``base_dn`` matching ``filterstr``, on one connection."""
    def paged_search(connection):
        control = SimplePagedResultsControl(True, size=SEARCH_PAGE_SIZE, cookie="")
        entries = []
        while True:
            message = connection.search_ext(base_dn, ldap.SCOPE_SUBTREE, filterstr, attributes,
                                            serverctrls=[control], timeout=timeout)
            _, data, _, controls = connection.result3(message, timeout=timeout)
            entries.extend(data)
            cookie = next((answer.cookie for answer in controls
                           if answer.controlType == PAGED_RESULTS_OID), None)
            if not cookie:
                return entries
            control.cookie = cookie

    def limited_search(connection):
        return connection.search_ext_s(base_dn, ldap.SCOPE_SUBTREE, filterstr, attributes,
                                       timeout=timeout, sizelimit=MAX_UNPAGED_ENTRIES)

    try:
        with directory_errors("listing accounts"):
            results = pool.run(paged_search if paged else limited_search)
    except ldap.SIZELIMIT_EXCEEDED:
        raise NotImplementedError(
            f"the directory does not page search results and holds more than "
            f"{MAX_UNPAGED_ENTRIES} matching entries, or its size limit is lower: "
            "its accounts cannot be listed") from None
    except ldap.NO_SUCH_OBJECT:
        return []
    return [(dn, values) for dn, values in results if dn]


def first_value(attributes, name):
    """First value of an attribute as text (attribute names are case-insensitive)."""
    for key, values in attributes.items():
        if key.lower() == name.lower() and values:
            return values[0].decode("utf-8", "replace")
    return None


def _positive(value):
    try:
        return int(value) > 0
    except (TypeError, ValueError):
        return False
