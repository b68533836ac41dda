"""Serve the digits web page on 127.0.0.1, with a model at /model.onnx for its "demo model" button.

    python web/serve.py [--port 8000] [--model runs/demo/model.onnx]

The page is static: this is a small file server (standard library only) that sends
the WebAssembly and module types browsers insist on, and no-cache headers so a
re-exported model is picked up. It serves the page's own files, onnxruntime-web's
dist/ files and the model, nothing else: no folder listings, and no symlink that leads
out of those. A request it cannot parse is a 400. It prints the address, then serves
until Ctrl-C.
"""

import argparse
import errno
import functools
import http.server
import sys
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = ("index.html", "app.js", "digits.js", "style.css")
ORT_DIST = "/node_modules/onnxruntime-web/dist/"  # digits.js loads onnxruntime-web from here
TYPES = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
         ".onnx": "application/octet-stream", ".ort": "application/octet-stream", ".css": "text/css",
         ".html": "text/html; charset=utf-8"}


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}
    model: Path | None = None

    def send_head(self):
        """The file a GET or HEAD names, opened, with its headers sent; 400 for a request
        path that is not valid (a NUL, bad percent-encoding), 404 for anything not served."""
        try:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path, errors="strict")
            if "\0" in path:
                raise ValueError("NUL in the path")
        except ValueError:  # UnicodeDecodeError included
            self.send_error(400, "Bad request path")
            return None
        file = self.served_file(path)
        try:
            handle = open(file, "rb") if file else None
        except OSError:
            handle = None
        if handle is None:
            self.send_error(404, "Not found")
            return None
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(file)))
        self.send_header("Content-Length", str(Path(file).stat().st_size))
        self.end_headers()
        return handle

    def served_file(self, path: str) -> Path | None:
        """The real file behind a request path, or None: the page's files (not symlinks),
        /model.onnx, and plain files in onnxruntime-web's dist/ that resolve inside it."""
        if path == "/model.onnx":
            return self.model
        name = "index.html" if path == "/" else path[1:]
        if name in PAGE:
            file = HERE / name
            return file if file.is_file() and not file.is_symlink() else None
        if path.startswith(ORT_DIST):
            dist = (HERE / ORT_DIST.strip("/")).resolve()
            file = (dist / path[len(ORT_DIST):]).resolve()
            return file if file.parent == dist and file.is_file() else None
        return None

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: give a port number from 0 to 65535")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=_port, default=8000, help="0 picks a free port")
    parser.add_argument("--model", type=Path, default=None, help="served at /model.onnx (the page's demo-model button)")
    args = parser.parse_args()
    if not (HERE / "node_modules" / "onnxruntime-web").is_dir():
        sys.exit("serve.py: error: web/node_modules is missing: run `make web-deps` (npm ci in web/)")
    model = args.model if args.model and args.model.is_file() else None
    if args.model and model is None:
        print(f"serve.py: no model at {ascii(str(args.model))}: the page's demo-model button will say so",
              file=sys.stderr)
    handler = functools.partial(type("Bound", (Handler,), {"model": model and model.resolve()}), directory=str(HERE))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    except OSError as e:
        why = "in use by another program; give another PORT" if e.errno == errno.EADDRINUSE else e.strerror
        sys.exit(f"serve.py: error: port {args.port}: {why}")
    print(f"serving the digits page at http://127.0.0.1:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
