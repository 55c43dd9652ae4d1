"""A one-query PostgreSQL client for the clinic example: what `psql CONNINFO -c SQL` does, for
machines whose psql is older than 17 (only libpq 17+ speaks `sslnegotiation=direct`).

usage: query.py CONNINFO SQL

It connects with psycopg (its bundled libpq), runs SQL, prints the rows separated by ` | `
and exits 0; if the connection or the query fails it prints `error: ` and libpq's message on
standard output and exits 1.
"""

from __future__ import annotations

import sys

import psycopg


def main(conninfo: str, sql: str) -> int:
    try:
        with psycopg.connect(conninfo, connect_timeout=30) as connection:
            rows = connection.execute(sql.encode()).fetchall()
    except psycopg.Error as exc:
        print(f"error: {str(exc).strip()}")
        return 1
    for row in rows:
        print(" | ".join(str(value) for value in row))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
