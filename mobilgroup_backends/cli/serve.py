"""``mobilgroup serve``: the alert receiver (:mod:`mobilgroup_backends.serve`) on waitress.

waitress is the server because it is a well-kept production WSGI server in pure Python: it runs
the same on Linux, macOS and Windows (gunicorn is Unix-only), needs no compiler, and bounds what
it reads from a client on its own (request body size, header size, channel timeouts).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType
from typing import Any

from ..config import is_loopback
from ..errors import ConfigurationError, ValidationError
from .output import EXIT_OK

#: What waitress itself reads at most: past it it answers 413 without the application; below it
#: the application's own bound (``--max-body``) answers with its JSON message.
SERVER_BODY_LIMIT = 16 * 1024 * 1024


def add_commands(commands: Any) -> None:
    from . import add_gateway_options

    serve = commands.add_parser(
        "serve", help="receive Alertmanager, Grafana and Zabbix notifications and text them",
        description="Run the alert receiver: POST /alertmanager, /grafana, /send; GET /healthz, "
                    "/metrics. The account and the default recipients come from --url or "
                    "MOBILGROUP_URL (mobilgroup://LOGIN:PASSWORD@USER_ID/PHONE); the token from "
                    "MOBILGROUP_RECEIVER_TOKEN or --token-file.")
    add_gateway_options(serve)
    serve.add_argument("--listen", default="127.0.0.1:8787", metavar="HOST:PORT",
                       help="address and port to listen on (default 127.0.0.1:8787; port 0 "
                            "picks a free one)")
    serve.add_argument("--token-file", metavar="FILE",
                       help="read the token requests must carry from the first line of FILE")
    serve.add_argument("--no-auth", action="store_true",
                       help="accept requests without a token: only with a loopback --listen")
    serve.add_argument("--routes", metavar="FILE",
                       help='a JSON routing file: {"receiver:NAME": [PHONE], "LABEL=VALUE": '
                            "[PHONE]}")
    serve.add_argument("--max-parts", type=int, metavar="N",
                       help="SMS parts one notification may take (default 1)")
    serve.add_argument("--max-body", type=int, default=None, metavar="BYTES",
                       help="the largest body accepted (default 1 MiB)")
    serve.add_argument("--threads", type=int, default=4,
                       help="requests handled at once (default 4)")
    serve.add_argument("--zabbix-media-type", action="store_true",
                       help="print the Zabbix webhook media type to import, and exit")
    serve.set_defaults(handler=run_serve)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a host and a port."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValidationError("--listen", text, "not HOST:PORT",
                              "give e.g. --listen 127.0.0.1:8787 or --listen 0.0.0.0:8787")
    return host, int(port)


def run_serve(args: argparse.Namespace) -> int:
    try:
        import waitress

        from ..serve import MAX_BODY, make_app, zabbix_media_type
    except ImportError as exc:
        raise ConfigurationError("mobilgroup serve", exc.name or "waitress",
                                 "the receiver's packages are not installed",
                                 "pip install 'mobilgroup-backends[serve]'") from None
    from . import _url

    if args.zabbix_media_type:
        print(zabbix_media_type(), end="")
        return EXIT_OK

    host, port = parse_listen(args.listen)
    # One line per notification on standard error (phones masked, never a secret), for the
    # journal or the container's log.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.no_auth and not is_loopback(host):
        raise ValidationError("--no-auth", args.listen, "refused on an address other machines "
                              "reach: anyone there could send SMS at your expense",
                              "set MOBILGROUP_RECEIVER_TOKEN (or --token-file), or listen on "
                              "127.0.0.1")
    options = {"receiver_token_file": args.token_file, "max_parts": args.max_parts,
               "allow_insecure_http": args.allow_insecure_http}
    app = make_app(_url(args), allow_no_auth=args.no_auth, routes=args.routes,
                   max_body=args.max_body or MAX_BODY,
                   url_source="--url-file" if args.url_file else "--url", **options)
    server = waitress.create_server(app, host=host, port=port, threads=max(1, args.threads),
                                    max_request_body_size=SERVER_BODY_LIMIT, ident="mobilgroup")

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    bound = getattr(server, "effective_port", port)
    auth = "no authentication (loopback only)" if args.no_auth else "token required"
    print(f"mobilgroup serve: listening on http://{host}:{bound} ({auth}); POST /alertmanager, "
          f"/grafana, /send", flush=True)
    try:
        server.run()  # returns on SIGTERM or Ctrl-C (waitress takes the KeyboardInterrupt)
    except KeyboardInterrupt:
        pass
    finally:
        print("mobilgroup serve: stopping (a pending summary is sent first)", file=sys.stderr,
              flush=True)
        signal.signal(signal.SIGTERM, previous)
        server.close()
        app.close()
    return EXIT_OK
