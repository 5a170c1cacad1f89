"""Run a wsgidav server for the backend tests: `python _wsgidav_server.py ROOT USER PASSWORD`.

Binds 127.0.0.1 on a port the kernel picks and prints that port on stdout,
then serves ROOT with basic auth for USER/PASSWORD until killed.
"""

from __future__ import annotations

import sys

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp


def main() -> None:
    root, user, password = sys.argv[1:4]
    config = {
        "host": "127.0.0.1",
        "port": 0,
        "provider_mapping": {"/": root},
        "http_authenticator": {
            "domain_controller": None,  # SimpleDomainController(simple_dc)
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
        },
        "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
        "dir_browser": {"enable": False},
        "verbose": 0,
        "logging": {"enable": False},
    }
    app = WsgiDAVApp(config)
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=32)
    server.prepare()
    print(server.bind_addr[1], flush=True)
    try:
        server.serve()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
