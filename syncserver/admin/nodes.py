"""``syncserver-admin node add|list|set|remove``: the storage nodes users are assigned to.

The commands work on the node list of ``nodes.*`` (``nodes.sqluri``), even
before ``nodes.assignment`` is turned on, so nodes can be set up first.
A URL without a scheme gets ``https://`` and every URL a trailing ``/``,
as the server stores them. See docs/nodes.rst.
"""

import argparse

from syncserver.admin.context import AdminError
from syncserver.nodes import NodeExists, NodeNotFound
from syncserver.settings import normalize_node_url
from syncserver.wording import count_of

LIST_COLUMNS = ("url", "capacity", "load", "available", "downed", "backoff")


def register(subparsers):
    node = subparsers.add_parser("node", help="add, list and change storage nodes")
    commands = node.add_subparsers(dest="node_command", metavar="ACTION")
    commands.required = True

    add = commands.add_parser("add", help="add a node that new users may be assigned to")
    add.add_argument("url", help="the node's URL, as clients must reach it")
    add.add_argument("--capacity", type=_count, required=True,
                     help="the most users the node may be given")
    add.add_argument("--available", action=argparse.BooleanOptionalAction, default=True,
                     help="whether it takes new users (default: yes)")
    add.add_argument("--downed", action=argparse.BooleanOptionalAction, default=False,
                     help="answer its storage requests with 503 (default: no)")
    add.add_argument("--backoff", type=_count, default=0, metavar="SECONDS",
                     help="X-Weave-Backoff sent to its clients (default: 0, none)")
    add.set_defaults(handler=add_node)

    listing = commands.add_parser("list", help="show every node with its load and flags")
    listing.set_defaults(handler=list_nodes)

    change = commands.add_parser("set", help="change a node's capacity or flags")
    change.add_argument("url")
    change.add_argument("--capacity", type=_count)
    change.add_argument("--available", action=argparse.BooleanOptionalAction,
                        help="take new users, or stop (its users stay)")
    change.add_argument("--downed", action=argparse.BooleanOptionalAction,
                        help="mark down (503 to its users, no new ones) or back up")
    change.add_argument("--backoff", type=_count, metavar="SECONDS",
                        help="X-Weave-Backoff for its clients; 0 turns it off")
    change.add_argument("--unassign-all", action="store_true",
                        help="forget every user's assignment to it (they get a node again "
                             "on their next node/weave request; their data stays behind)")
    change.set_defaults(handler=set_node)

    remove = commands.add_parser("remove", help="remove a node and forget its users' assignment")
    remove.add_argument("url")
    remove.set_defaults(handler=remove_node)


def add_node(context, args):
    url = _url(args.url)
    try:
        node = context.nodes.add_node(url, args.capacity, available=args.available,
                                      downed=args.downed, backoff=args.backoff)
    except NodeExists:
        raise AdminError(f"there is already a node {url}") from None
    except ValueError as error:
        raise AdminError(str(error)) from None
    context.echo(f"added {node.url} (capacity {node.capacity})")
    return 0


def list_nodes(context, args):
    rows = [(node.url, str(node.capacity), str(node.current_load), _yes_no(node.available),
             _yes_no(node.downed), str(node.backoff)) for node in context.nodes.list_nodes()]
    if not rows:
        context.echo("no nodes")
        return 0
    widths = [max(len(row[index]) for row in [LIST_COLUMNS, *rows])
              for index in range(len(LIST_COLUMNS))]
    for row in [LIST_COLUMNS, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        context.echo("  ".join(cells).rstrip())
    return 0


def set_node(context, args):
    url = _url(args.url)
    changes = dict(capacity=args.capacity, available=args.available, downed=args.downed,
                   backoff=args.backoff)
    if all(value is None for value in changes.values()) and not args.unassign_all:
        raise AdminError("nothing to change: give --capacity, --available, --downed, "
                         "--backoff or --unassign-all")
    try:
        node = context.nodes.update_node(url, **changes)
        if args.unassign_all:
            count = context.nodes.unassign_all(url)
            context.echo(f"unassigned {count_of(count, 'user')} from {url}")
            node = context.nodes.get_node(url) or node
    except NodeNotFound:
        raise AdminError(f"there is no node {url}") from None
    context.echo(f"{node.url}: capacity {node.capacity}, load {node.current_load}, "
                 f"available {_yes_no(node.available)}, downed {_yes_no(node.downed)}, "
                 f"backoff {node.backoff}")
    return 0


def remove_node(context, args):
    url = _url(args.url)
    try:
        count = context.nodes.remove_node(url)
    except NodeNotFound:
        raise AdminError(f"there is no node {url}") from None
    context.echo(f"removed {url}; {count_of(count, 'user')} will get another node on their "
                 "next request")
    return 0


def _url(text):
    return normalize_node_url(text.strip())


def _count(text):
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def _yes_no(flag):
    return "yes" if flag else "no"
