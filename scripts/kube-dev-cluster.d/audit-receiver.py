#!/usr/bin/env python3
"""A stand-in audit webhook receiver for checking scripts/kube-dev-cluster without driftwatch.

HTTPS on 127.0.0.1 with driftwatch's serving cert, a REQUIRED client certificate signed by
the CA, and (if --token-file) a required bearer token. Each POST body is saved as
OUT/NNNNNN.json, with OUT/NNNNNN.meta.json (path, client CN, token ok); the answer is 200
(401 for a wrong or missing token). Stops on SIGTERM/SIGINT.

  audit-receiver.py --cert pki/driftwatch.crt --key pki/driftwatch.key --ca pki/ca.crt \
      --token-file pki/webhook/dev.token --out /tmp/received [--port 18443]
"""
import argparse
import hmac
import http.server
import json
import os
import signal
import ssl
import sys
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18443)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--token-file")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    token = None
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    lock = threading.Lock()
    counter = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            sys.stderr.write("audit-receiver: %s %s\n" % (self.address_string(), fmt % a))

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            cert = self.connection.getpeercert() or {}
            cn = None
            for rdn in cert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
            auth = self.headers.get("Authorization", "")
            token_ok = token is None or hmac.compare_digest(auth, "Bearer " + token)
            with lock:
                counter[0] += 1
                n = counter[0]
            base = os.path.join(args.out, "%06d" % n)
            with open(base + ".json.tmp", "wb") as f:
                f.write(body)
            os.replace(base + ".json.tmp", base + ".json")
            meta = {"path": self.path, "client_cn": cn, "token_ok": token_ok,
                    "content_type": self.headers.get("Content-Type"), "bytes": len(body)}
            with open(base + ".meta.json", "w") as f:
                json.dump(meta, f)
            status = 200 if token_ok else 401
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(cafile=args.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    srv = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    sys.stderr.write("audit-receiver: listening on https://%s:%d, saving to %s\n"
                     % (args.host, args.port, args.out))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
