"""Put the dashboard's chart library into the package: uPlot from the npm registry, at the
version and checksums pinned here, into ``zmqpipeline/dashboard/static/vendor/`` (not in
git: ``make package`` and the dashboard tests' setup run this script).

    python scripts/vendor_uplot.py            # fetch (npm pack), verify, unpack
    python scripts/vendor_uplot.py --check dist   # the wheel and sdist in dist/ hold it

Nothing is fetched when the files are there already and match. A tarball whose checksums
differ from the pins is refused, and nothing is unpacked.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

__all__ = ["FILES", "SHA256", "SHA512_INTEGRITY", "VERSION", "main"]

VERSION = "1.6.32"
#: sha256 of ``uplot-1.6.32.tgz`` as ``npm pack`` fetches it.
SHA256 = "4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d"
#: The registry's ``dist.integrity`` of that version (``npm view uplot@1.6.32 dist.integrity``).
SHA512_INTEGRITY = (
    "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+"
    "jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
)
#: Member of the tarball -> file name in the vendor folder.
FILES = {
    "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
    "package/dist/uPlot.min.css": "uPlot.min.css",
    "package/LICENSE": "uPlot.LICENSE",
}

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "zmqpipeline" / "dashboard" / "static" / "vendor"
STAMP = VENDOR / "VERSION"


def _fetch(workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("vendor_uplot: npm is needed to fetch uplot (Debian: apt-get install npm)")
    subprocess.run(
        [npm, "pack", f"uplot@{VERSION}", "--silent", "--pack-destination", str(workdir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return workdir / f"uplot-{VERSION}.tgz"


def _verify(tarball: Path) -> None:
    blob = tarball.read_bytes()
    sha256 = hashlib.sha256(blob).hexdigest()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()
    if sha256 != SHA256 or integrity != SHA512_INTEGRITY:
        sys.exit(
            f"vendor_uplot: {tarball.name} does not match the pins "
            f"(sha256 {sha256}, integrity {integrity}): refused"
        )


def _unpack(tarball: Path) -> None:
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        for member, name in FILES.items():
            source = archive.extractfile(member)
            if source is None:
                sys.exit(f"vendor_uplot: {member} missing from {tarball.name}")
            (VENDOR / name).write_bytes(source.read())
    STAMP.write_text(f"uplot {VERSION} {SHA256}\n")


def vendor() -> None:
    """Fetch, verify and unpack, unless the vendor folder holds this version already."""
    if STAMP.exists() and STAMP.read_text().split() == ["uplot", VERSION, SHA256]:
        if all((VENDOR / name).exists() for name in FILES.values()):
            return
    with tempfile.TemporaryDirectory() as workdir:
        tarball = _fetch(Path(workdir))
        _verify(tarball)
        _unpack(tarball)
    print(f"vendor_uplot: uplot {VERSION} verified, in {VENDOR.relative_to(ROOT)}")


def check(dist: Path) -> None:
    """Exit non-zero unless every wheel and sdist in ``dist`` holds the vendor files."""
    wanted = [f"zmqpipeline/dashboard/static/vendor/{name}" for name in FILES.values()]
    archives = sorted(dist.glob("*.whl")) + sorted(dist.glob("*.tar.gz"))
    if not archives:
        sys.exit(f"vendor_uplot: no wheel or sdist in {dist}")
    for archive in archives:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as z:
                names = z.namelist()
        else:
            with tarfile.open(archive) as t:
                names = [n.partition("/")[2] for n in t.getnames()]
        missing = [w for w in wanted if w not in names]
        if missing:
            sys.exit(f"vendor_uplot: {archive.name} lacks {', '.join(missing)}")
    print(f"vendor_uplot: uplot {VERSION} is in {', '.join(a.name for a in archives)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", metavar="DIST", type=Path, help="check the built archives")
    args = parser.parse_args()
    if args.check is not None:
        check(args.check)
    else:
        vendor()


if __name__ == "__main__":
    main()
