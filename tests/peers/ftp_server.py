#!/usr/bin/env python3
"""An FTP server (pyftpdlib) for the CWMP file transfer tests.

Serves and receives the files of ROOT for USER/PASSWORD (and anonymous
reads) on 127.0.0.1, on a port the system picks, and prints
"READY <port>". Runs until its standard input closes.

--cut N: the first download's data connection is closed after N bytes,
with the "426 Transfer aborted" reply a server gives when a transfer
breaks; later downloads run whole (a resumed download gets the rest).
"""

import argparse
import sys
import threading

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.servers import FTPServer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("--cut", type=int, default=None)
    args = parser.parse_args()

    state = {"cut": args.cut}

    class CuttingDTP(DTPHandler):
        def send(self, data):
            left = state["cut"]
            if left is None or self.receive:
                return super().send(data)
            if left <= 0:
                state["cut"] = None
                self.handle_close()
                return 0
            sent = super().send(data[:left])
            state["cut"] = left - sent
            return sent

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmw")
    authorizer.add_anonymous(args.root)
    handler = FTPHandler
    handler.authorizer = authorizer
    handler.dtp_handler = CuttingDTP
    # send(), not sendfile(): the cut counts what send() passes on.
    handler.use_sendfile = False
    handler.passive_ports = None
    # A failed login is answered at once (pyftpdlib waits 3 s by default).
    handler.auth_failed_timeout = 0
    server = FTPServer(("127.0.0.1", 0), handler)
    port = server.socket.getsockname()[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"READY {port}", flush=True)
    sys.stdin.read()
    server.close_all()


if __name__ == "__main__":
    main()
