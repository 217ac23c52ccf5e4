"""Exit 0 when PostgreSQL (argv[1]) and Redis (argv[2]) answer; else say which is down."""

import sys

import psycopg
import redis


def main(pg_url: str, redis_url: str) -> int:
    ok = True
    try:
        # Connect to the maintenance database: the test database may not exist yet.
        conninfo = psycopg.conninfo.conninfo_to_dict(pg_url)
        conninfo["dbname"] = "postgres"
        psycopg.connect(**conninfo, connect_timeout=3).close()
    except Exception as exc:
        print(f"PostgreSQL at {pg_url} unreachable: {exc}", file=sys.stderr)
        ok = False
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except Exception as exc:
        print(f"Redis at {redis_url} unreachable: {exc}", file=sys.stderr)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
