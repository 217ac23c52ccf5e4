"""One ASGI server process on a listening socket it inherits (``run_platform`` starts them).

    python -m apps.runtime.serve FD

``run_platform`` opens the platform's port once and starts SERVER_PROCESSES
of these on it: the kernel hands each new connection to whichever process
accepts first. Not ``uvicorn --fd``: uvicorn builds that socket as a Unix
socket whatever it is (``socket.fromfd(fd, AF_UNIX, …)``), so asyncio leaves
Nagle's algorithm on for its TCP connections, and a streamed response's
first small write after the headers then waits for the client's delayed ACK
(~40 ms on Linux: measured here as the whole first-token delay of /v1). Here
the socket's family comes from the descriptor itself, and every connection
gets TCP_NODELAY as on a port uvicorn binds.

Imports nothing of the project but its ASGI application (by name, in uvicorn)
and apps.core.logs (standard library only), to name its lines "server".

uvicorn's own logging set-up is skipped (``log_config=None``): its lines
("Started server process", errors) go through settings.LOGGING like every
other line, which Django applies as the application loads, before uvicorn
says anything; the access log is the platform's own (llmagentos.access_log).
"""

from __future__ import annotations

import socket
import sys

import uvicorn

from apps.core.logs import set_process_name

APPLICATION = "llmagentos.asgi:application"
GRACEFUL_STOP_SECONDS = 10


def main(argv: list[str]) -> int:
    set_process_name("server")
    listener = socket.socket(fileno=int(argv[0]))  # family and type read from the descriptor
    config = uvicorn.Config(
        APPLICATION, access_log=False, log_config=None, timeout_graceful_shutdown=GRACEFUL_STOP_SECONDS
    )
    uvicorn.Server(config).run(sockets=[listener])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
