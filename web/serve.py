"""Serve the digits web page on 127.0.0.1, with a model at /model.onnx for its "demo model" button.

    python web/serve.py [--port 8000] [--model runs/demo/model.onnx]

The page is static: this is a plain file server (standard library only) that sends
the WebAssembly and module types browsers insist on, and no-cache headers so a
re-exported model is picked up. It prints the address, then serves until Ctrl-C.
"""

import argparse
import functools
import http.server
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TYPES = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript", ".onnx": "application/octet-stream",
         ".ort": "application/octet-stream", ".css": "text/css", ".html": "text/html; charset=utf-8"}


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}
    model: Path | None = None

    def translate_path(self, path: str) -> str:
        if path.split("?", 1)[0] == "/model.onnx" and self.model is not None:
            return str(self.model)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--model", type=Path, default=None, help="served at /model.onnx (the page's demo-model button)")
    args = parser.parse_args()
    if not (HERE / "node_modules" / "onnxruntime-web").is_dir():
        sys.exit("serve.py: error: web/node_modules is missing: run `make web-deps` (npm ci in web/)")
    model = args.model if args.model and args.model.is_file() else None
    if args.model and model is None:
        print(f"serve.py: no model at {args.model}: the page's demo-model button will say so", file=sys.stderr)
    handler = functools.partial(type("Bound", (Handler,), {"model": model and model.resolve()}), directory=str(HERE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    print(f"serving the digits page at http://127.0.0.1:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
