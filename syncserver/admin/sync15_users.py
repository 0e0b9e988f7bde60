"""``syncserver-admin token-user ...``: the Sync 1.5 users (current Firefox, Mozilla accounts).

An ACCOUNT argument is the Mozilla-account id (the FxA uid, 32 hex digits,
as ``list`` shows it) or a Sync 1.5 uid (a number of at most 19 digits).

- ``list``, ``show``: the account's uid, node, generation, client state,
  keys-changed-at and rows (each key change gave a new uid).
- ``block`` / ``unblock``: a blocked account's token requests are refused
  (401 ``new-users-disabled``, a security-log line) until it is unblocked;
  its rows and data stay. An account can be blocked before its first token.
- ``delete``: blocks the account, deletes the records of every uid it had
  (here, or through the storage node's API: see
  :mod:`syncserver.admin.replaced_uids`), then forgets the account; it may
  come back as a new account later (if the policy lets it).
- ``reassign``: marks the current row replaced, so the next token request
  gets a new uid on the best node (an empty store: the client uploads again).
"""

import re

from syncserver.admin.context import AdminError, format_time
from syncserver.admin.node_requests import NodeRequestFailed
from syncserver.admin.replaced_uids import UidStorage
from syncserver.tokenserver.users import NoSuchTokenUser

_SYNC_UID = re.compile(r"[0-9]{1,19}")
_FXA_UID = re.compile(r"[A-Za-z0-9=_-]{1,64}")
THIS_SERVER = "(this server)"
NODE_GONE = "(none: node removed)"


def register(subparsers):
    token_user = subparsers.add_parser(
        "token-user", help="Sync 1.5 users (current Firefox): list, show, block, delete, reassign")
    actions = token_user.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="every account with its uid and node")
    listing.add_argument("--json", action="store_true", help="a JSON array")
    listing.set_defaults(handler=list_accounts)

    show = actions.add_parser("show", help="one account, with all its uids")
    _account_argument(show)
    show.add_argument("--json", action="store_true", help="a JSON object")
    show.set_defaults(handler=show_account)

    for name, blocked, text in (
            ("block", True, "refuse the account's token requests (its data stays)"),
            ("unblock", False, "let a blocked account get tokens again")):
        toggle = actions.add_parser(name, help=text)
        _account_argument(toggle)
        toggle.set_defaults(handler=set_blocked, blocked=blocked)

    delete = actions.add_parser("delete", help="forget the account and delete all its data")
    _account_argument(delete)
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=delete_account)

    reassign = actions.add_parser(
        "reassign", help="give the account a new uid on the best node at its next request")
    _account_argument(reassign)
    reassign.set_defaults(handler=reassign_account)


def _account_argument(parser):
    parser.add_argument("account", metavar="ACCOUNT",
                        help="the Mozilla-account id (FxA uid) or the Sync 1.5 uid")


# -- handlers -------------------------------------------------------------------

def list_accounts(context, args):
    accounts = context.token_users.list_accounts()
    if args.json:
        context.echo_json([_account_json(account) for account in accounts])
        return 0
    if not accounts:
        context.echo("no Sync 1.5 users")
        return 0
    context.echo_table(["UID", "FXA UID", "NODE", "STATE", "CREATED"], [
        [account.uid, account.fxa_uid, _node(account), _state(account),
         _time(account.created_at)] for account in accounts])
    return 0


def show_account(context, args):
    fxa_uid = _fxa_uid(context, args.account)
    account = context.token_users.get_account(fxa_uid)
    if account is None:
        raise AdminError(f"no Sync 1.5 user has the FxA uid {fxa_uid}.")
    if args.json:
        context.echo_json(_account_json(account, with_rows=True))
        return 0
    context.echo_fields([
        ("fxa uid", account.fxa_uid),
        ("uid", account.uid),
        ("node", _node(account)),
        ("state", _state(account)),
        ("generation", account.generation),
        ("client state", account.client_state if account.client_state is not None else None),
        ("keys changed at", _time(account.keys_changed_at)),
        ("created", _time(account.created_at)),
        ("replaced", _time(account.replaced_at)),
    ])
    if account.rows:
        context.echo()
        context.echo_table(
            ["UID", "CLIENT STATE", "GENERATION", "CREATED", "REPLACED", "DATA"], [
                [row.uid, row.client_state or '""', row.generation, _time(row.created_at),
                 _time(row.replaced_at), _data(row)] for row in account.rows])
    return 0


def set_blocked(context, args):
    fxa_uid = _fxa_uid(context, args.account)
    context.token_users.set_blocked(fxa_uid, args.blocked)
    if args.blocked:
        context.echo(f"Blocked {fxa_uid}: its token requests are refused from now on.")
    else:
        context.echo(f"Unblocked {fxa_uid}.")
    return 0


def delete_account(context, args):
    fxa_uid = _fxa_uid(context, args.account)
    users = context.token_users
    account = users.get_account(fxa_uid)
    if account is None:
        raise AdminError(f"no Sync 1.5 user has the FxA uid {fxa_uid}.")
    if not args.yes:
        if not context.is_interactive():
            raise AdminError("deleting needs --yes when standard input is not a terminal.")
        context.stderr.write(f"Delete the Sync 1.5 user {fxa_uid} and all its stored data? "
                             "[y/N] ")
        context.stderr.flush()
        if context.stdin.readline().strip().lower() not in ("y", "yes"):
            raise AdminError("nothing was deleted.")
    # Blocked first, so that no token request gives it a new uid while its data goes.
    users.set_blocked(fxa_uid, True)
    rows = sorted(users.get_account(fxa_uid).rows, key=lambda row: row.uid)
    uids = [row.uid for row in rows]
    uid_storage = UidStorage(context.settings, context.storage_if_served)
    for row in rows:
        state = "listed" if row.node_url is not None else (
            "this server" if row.node_id is None else "gone")
        try:
            uid_storage.delete(row.uid, fxa_uid, row.node_url, state)
        except NodeRequestFailed as error:
            raise AdminError(f"the data of uid {row.uid} could not be deleted: {error}; the "
                             "account stays blocked: run the command again.") from None
    users.delete_account(fxa_uid)  # the block above keeps a row: never NoSuchTokenUser
    context.echo(f"Deleted the Sync 1.5 user {fxa_uid} (uids {', '.join(map(str, uids)) or '-'}) "
                 "and its stored data.")
    return 0


def reassign_account(context, args):
    fxa_uid = _fxa_uid(context, args.account)
    try:
        uid = context.token_users.reassign(fxa_uid)
    except NoSuchTokenUser:
        raise AdminError(f"no Sync 1.5 user has the FxA uid {fxa_uid}.") from None
    context.echo(f"{fxa_uid} leaves uid {uid}: its next token request gets a new uid on the "
                 "best node, and its devices upload their data again.")
    return 0


# -- helpers --------------------------------------------------------------------

def _fxa_uid(context, text):
    """The FxA uid an ACCOUNT argument names (a Sync uid is looked up)."""
    text = text.strip()
    if _SYNC_UID.fullmatch(text):
        fxa_uid = context.token_users.find_fxa_uid(int(text))
        if fxa_uid is None:
            raise AdminError(f"no Sync 1.5 user has the uid {text}.")
        return fxa_uid
    if not _FXA_UID.fullmatch(text):
        raise AdminError(f"{text!r} is neither a Mozilla-account id nor a Sync 1.5 uid.")
    return text


def _node(account):
    if account.uid is None:
        return None
    if account.node_url is not None:
        return account.node_url
    return NODE_GONE if account.node_state == "gone" else THIS_SERVER


def _state(account):
    if account.blocked:
        return "blocked"
    if account.uid is None:
        return None
    if account.replaced_at is not None or account.node_state != "ok":
        return "moves at next request"
    return "active"


def _data(row):
    """Where a row's records stand: kept, or deleted by ``purge-expired``."""
    if row.purged_at is not None:
        return f"deleted {_time(row.purged_at)}"
    return "kept"


def _time(milliseconds):
    return format_time(milliseconds / 1000) if milliseconds else None


def _account_json(account, with_rows=False):
    value = {
        "fxa_uid": account.fxa_uid, "uid": account.uid, "node": account.node_url,
        "node_state": account.node_state, "blocked": account.blocked,
        "generation": account.generation, "client_state": account.client_state,
        "keys_changed_at": account.keys_changed_at, "created_at": account.created_at,
        "replaced_at": account.replaced_at,
    }
    if with_rows:
        value["rows"] = [{"uid": row.uid, "client_state": row.client_state,
                          "generation": row.generation, "keys_changed_at": row.keys_changed_at,
                          "created_at": row.created_at, "replaced_at": row.replaced_at,
                          "purged_at": row.purged_at, "node": row.node_url}
                         for row in account.rows]
    return value
