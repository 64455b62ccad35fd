"""Manage the browser chat's users: `python -m llm.web.users add NAME`, `remove NAME`, `list`.

The password is asked twice on a terminal, or read from the first line of standard input
(`echo "$PASSWORD" | python -m llm.web.users add NAME`). Only its bcrypt hash is stored, in the users file
(`users.json` in the data folder, or `HEARTH_USERS_FILE`; `--file` overrides both). A running app sees a
new user at once; a first user turns the login page on at the app's next start.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from llm.web.auth import hash_password, read_users, users_file, write_users


def read_password(stdin=sys.stdin) -> str:
    if not stdin.isatty():
        return stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        raise ValueError("the passwords differ")
    return password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm.web.users", description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=users_file(), help="the users file (%(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("add", help="add a user, or set their password").add_argument("name")
    commands.add_parser("remove", help="remove a user").add_argument("name")
    commands.add_parser("list", help="list the users")
    args = parser.parse_args(argv)

    try:
        users = read_users(args.file)
        if args.command == "list":
            print("\n".join(sorted(users)) or "(no users)")
            return 0
        if args.command == "remove":
            if users.pop(args.name, None) is None:
                raise ValueError(f"there is no user {args.name!r}")
            write_users(args.file, users)
            print(f"removed {args.name} from {args.file}")
            return 0
        if not args.name.strip():
            raise ValueError("the name is empty")
        existed = args.name in users
        users[args.name] = hash_password(read_password())
        write_users(args.file, users)
        print(f"{'changed the password of' if existed else 'added'} {args.name} in {args.file}")
        return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
