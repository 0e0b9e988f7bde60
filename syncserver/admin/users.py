"""``syncserver-admin user ...``: accounts, through the auth and storage interfaces.

A username argument may also be an e-mail address: its Sync hash (what
clients compute) is the username then. Deleting an account deletes its
stored data too, as ``DELETE /user/1.0/<u>`` does.
"""

import getpass
import re

from syncserver.accounts.deletion import delete_account
from syncserver.accounts.password_reset import void_pending_code
from syncserver.admin.context import AdminError, format_bytes, format_time
from syncserver.auth import UserExists, UserNotFound
from syncserver.auth.usernames import extract_username, is_weak_password

#: Accounts read per request while listing.
LIST_PAGE_SIZE = 500

_QUOTA_UNITS = {"": 1, "k": 1, "m": 1024, "g": 1024 * 1024}


def register(subparsers):
    user = subparsers.add_parser("user", help="add, list, show, disable, enable, delete accounts")
    actions = user.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    add = actions.add_parser("add", help="create an account (even with registration closed)")
    _username_argument(add)
    add.add_argument("--email", help="e-mail address (default: the address given as USERNAME)")
    _password_options(add)
    add.set_defaults(handler=add_user)

    listing = actions.add_parser("list", help="list accounts by username")
    listing.add_argument("--after", metavar="USERNAME", help="start after this username")
    listing.add_argument("--limit", type=int, metavar="N", help="list at most N accounts")
    listing.add_argument("--json", action="store_true", help="a JSON array")
    listing.set_defaults(handler=list_users)

    show = actions.add_parser("show", help="an account, its quota and its collections")
    _username_argument(show)
    show.add_argument("--json", action="store_true", help="a JSON object")
    show.set_defaults(handler=show_user)

    for name, enabled, text in (("disable", False, "stop an account from signing in"),
                                ("enable", True, "let a disabled account sign in again")):
        toggle = actions.add_parser(name, help=text)
        _username_argument(toggle)
        toggle.set_defaults(handler=set_enabled, enabled=enabled)

    delete = actions.add_parser("delete", help="delete an account and all its stored data")
    _username_argument(delete)
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=delete_user)

    password = actions.add_parser("set-password", help="replace an account's password")
    _username_argument(password)
    _password_options(password)
    password.set_defaults(handler=set_password)

    quota = actions.add_parser(
        "set-quota", help="give an account its own quota",
        description="QUOTA is in KB, or with a K, M or G suffix (1M = 1024 KB); 'unlimited' "
                    "(or 0) removes the limit, 'default' goes back to storage.quota_size.")
    _username_argument(quota)
    quota.add_argument("quota", metavar="QUOTA")
    quota.set_defaults(handler=set_quota)


def _username_argument(parser):
    parser.add_argument("username", metavar="USERNAME",
                        help="the username, or the account's e-mail address")


def _password_options(parser):
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    source.add_argument("--password-file", metavar="FILE",
                        help="read the password from the first line of FILE")


# -- handlers -------------------------------------------------------------------

def add_user(context, args):
    username = _username(args.username)
    email = args.email or (args.username if "@" in args.username else None)
    if email and "@" in args.username and args.email and username != _username(email):
        raise AdminError("USERNAME is an e-mail address different from --email.")
    if not context.auth.manages_accounts:
        raise AdminError(f"{username} cannot be created here: the accounts are in a directory "
                         "this server only reads; create it there.")
    if context.settings.auth.strict_usernames:
        if not email:
            raise AdminError(
                "with auth.strict_usernames on (the default) an account is named by the Sync "
                "hash of its e-mail address, as clients compute it, and password reset mails "
                "that address: give the address as USERNAME "
                "(syncserver-admin user add alice@example.org).")
        if username != _username(email):
            raise AdminError(
                f"with auth.strict_usernames on, the username must be the Sync hash of the "
                f"e-mail address ({_username(email)}): give the address alone as USERNAME.")
    password = _read_password(context, args, username)
    try:
        user = context.auth.create_user(username, password, email)
    except UserExists:
        raise AdminError(f"an account named {username} already exists.") from None
    except ValueError as error:
        raise AdminError(f"cannot create {username}: {error}.") from None
    context.echo(f"Created account {user.username} (user id {user.user_id}).")
    if not email:
        context.echo(f"Note: {user.username} has no e-mail address, so it cannot reset a "
                     "forgotten password (give one with --email).")
    return 0


def list_users(context, args):
    after, left, listed = args.after, args.limit, []
    header = not args.json
    while left is None or left > 0:
        size = LIST_PAGE_SIZE if left is None else min(left, LIST_PAGE_SIZE)
        try:
            page = context.auth.list_users(after=after, limit=size)
        except NotImplementedError as error:
            raise AdminError(f"{error}.") from None
        if header:
            context.echo(f"{'USER ID':>10}  {'USERNAME':<32}  {'STATUS':<8}  EMAIL")
            header = False
        for user in page:
            if args.json:
                listed.append(_user_json(user))
            else:
                context.echo(f"{user.user_id:>10}  {user.username:<32}  "
                             f"{_status(user):<8}  {user.email or '-'}")
        if left is not None:
            left -= len(page)
        if len(page) < size:
            break
        after = page[-1].username
    if args.json:
        context.echo_json(listed)
    return 0


def show_user(context, args):
    user = _existing_user(context, args.username)
    storage = context.storage
    own_quota = storage.get_user_quota(user.user_id)
    default_quota = context.settings.storage.quota_size
    quota = default_quota if own_quota is None else own_quota
    used = storage.get_total_usage(user.user_id)
    stamps = storage.get_collection_timestamps(user.user_id)
    counts = storage.get_collection_counts(user.user_id)
    usage = storage.get_collection_usage(user.user_id)
    collections = [{"name": name, "items": counts.get(name, 0), "bytes": usage.get(name, 0),
                    "modified": stamps[name] / 100 if name in stamps else None}
                   for name in sorted(set(stamps) | set(counts))]
    if args.json:
        context.echo_json(dict(_user_json(user), quota_kb=quota or None,
                               own_quota_kb=own_quota, used_bytes=used, collections=collections))
        return 0
    if own_quota is None:
        quota_text = f"{quota} KB (storage.quota_size)" if quota else "none (storage.quota_size)"
    else:
        quota_text = f"{quota} KB (its own)" if quota else "none (its own)"
    context.echo_fields([
        ("username", user.username), ("user id", user.user_id), ("e-mail", user.email),
        ("status", _status(user)), ("created", format_time(user.created_at)),
        ("quota", quota_text), ("used", format_bytes(used)),
    ])
    context.echo()
    if collections:
        context.echo_table(["COLLECTION", "ITEMS", "BYTES", "MODIFIED"], [
            [c["name"], c["items"], c["bytes"], format_time(c["modified"])]
            for c in collections])
    else:
        context.echo("No stored data.")
    return 0


def set_enabled(context, args):
    username = _username(args.username)
    try:
        context.auth.set_enabled(username, args.enabled)
    except UserNotFound:
        raise AdminError(f"there is no account named {username}.") from None
    if not args.enabled:
        user = context.auth.get_user(username)
        if user is not None:
            _void_reset_code(context, user, "account disabled by syncserver-admin")
    if args.enabled:
        context.echo(f"Enabled {username}.")
    else:
        context.echo(f"Disabled {username}: it can no longer sign in (its data is kept).")
    return 0


def delete_user(context, args):
    user = _existing_user(context, args.username)
    if not context.auth.manages_accounts:
        # Checked first: deleting the data of an account that stays would lose it for nothing.
        raise AdminError(f"{user.username} is in a directory this server cannot change: "
                         "delete it there (its stored data is kept).")
    if not args.yes:
        if not context.is_interactive():
            raise AdminError("deleting needs --yes when standard input is not a terminal.")
        context.stderr.write(f"Delete {user.username} and all its stored data? [y/N] ")
        context.stderr.flush()
        if context.stdin.readline().strip().lower() not in ("y", "yes"):
            raise AdminError("nothing was deleted.")
    delete_account(user, context.auth, context.storage, context.nodes_if_used,
                   context.reset_codes_if_used)
    context.echo(f"Deleted {user.username} and its stored data.")
    return 0


def set_password(context, args):
    user = _existing_user(context, args.username)
    password = _read_password(context, args, user.username)
    try:
        context.auth.set_password(user.username, password)
    except UserNotFound:
        raise AdminError(f"there is no account named {user.username}.") from None
    voided = _void_reset_code(context, user, "password set by syncserver-admin")
    context.echo(f"Changed the password of {user.username}; the old one stops working"
                 + (", and so does the reset link mailed before." if voided else "."))
    return 0


def set_quota(context, args):
    quota_kb = parse_quota(args.quota)
    user = _existing_user(context, args.username)
    try:
        context.storage.set_user_quota(user.user_id, quota_kb)
    except NotImplementedError as error:
        raise AdminError(f"{error}.") from None
    if quota_kb is None:
        default = context.settings.storage.quota_size
        context.echo(f"{user.username} has the default quota again "
                     f"({f'{default} KB' if default else 'none'}).")
    elif quota_kb == 0:
        context.echo(f"{user.username} has no quota.")
    else:
        context.echo(f"{user.username} has a quota of {quota_kb} KB.")
    return 0


# -- helpers --------------------------------------------------------------------

def parse_quota(text):
    """``'default'`` -> None, ``'unlimited'`` -> 0, ``'512'``/``'512K'``/``'2M'``/``'1G'`` -> KB."""
    value = text.strip().lower()
    if value == "default":
        return None
    if value in ("unlimited", "none"):
        return 0
    match = re.fullmatch(r"(\d+)\s*([kmg]?)b?", value)
    if not match:
        raise AdminError(
            f"{text!r} is not a quota: give KB (512), a size (2M, 1G), 'unlimited' or 'default'.")
    return int(match.group(1)) * _QUOTA_UNITS[match.group(2)]


def _username(text):
    try:
        return extract_username(text)
    except ValueError:
        raise AdminError(
            f"{text!r} is neither a username (1 to 32 of a-z A-Z 0-9 . _ -) "
            "nor an e-mail address.") from None


def _existing_user(context, text):
    username = _username(text)
    user = context.auth.get_user(username)
    if user is None:
        raise AdminError(f"there is no account named {username}.")
    return user


def _read_password(context, args, username):
    """From --password-file, --password-stdin, or typed twice on a terminal."""
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as source:
                password = source.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            raise AdminError(f"cannot read {args.password_file}: {error}.") from None
    elif args.password_stdin:
        password = context.stdin.readline().rstrip("\r\n")
    elif context.is_interactive():
        password = getpass.getpass("Password: ", stream=context.stderr)
        if getpass.getpass("Password again: ", stream=context.stderr) != password:
            raise AdminError("the two passwords differ.")
    else:
        raise AdminError("no password given: use --password-stdin or --password-file, "
                         "or run on a terminal.")
    if not password:
        raise AdminError("the password is empty.")
    if is_weak_password(username, password):
        raise AdminError("the password is too weak: at least 8 bytes, and not the username.")
    return password


def _void_reset_code(context, user, what):
    """A reset link mailed before a password change, a disable or a delete stops working."""
    if context.reset_codes_if_used is None:
        return False
    return void_pending_code(context.reset_codes_if_used, user, what)


def _status(user):
    return "enabled" if user.enabled else "disabled"


def _user_json(user):
    return {"user_id": user.user_id, "username": user.username, "email": user.email,
            "enabled": user.enabled, "created_at": user.created_at}
