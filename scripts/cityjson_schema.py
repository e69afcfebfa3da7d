"""Write the official CityJSON 2.0 schema, taken from the official validator's wheel on PyPI.

    python scripts/cityjson_schema.py DEST

No package on PyPI, npm or Debian ships the schema files of CityJSON 2.0. The
official validator, cjval, compiles them into its binary, and the wheels of its
Python bindings, cjvalpy 0.4.1, are on PyPI for macOS and Windows (none for
Linux, so it cannot be installed here). This downloads the Windows wheel
(pinned by hash), finds the schema in its extension module, where it is stored
as plain text, checks the text against a pinned digest and writes it to DEST.

It is the one-file schema of CityJSON v2.0.0 (``$id``
https://www.cityjson.org/schemas/2.0.0/cityjson.schema.json), every ``$ref``
between the schema's parts already resolved: JSON Schema draft-07.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "cjvalpy-0.4.1-cp311-none-win_amd64.whl"
WHEEL_SHA256 = "44d40cc10e7719ee0b3c20c7d0eea8b39ed68670eb1c014e1472d0da0a72f68d"
MODULE = "cjvalpy/cjvalpy.cp311-win_amd64.pyd"
SCHEMA_ID = "https://www.cityjson.org/schemas/2.0.0/cityjson.schema.json"
SCHEMA_START = ('{"$schema":"http://json-schema.org/draft-07/schema#","$id":"' + SCHEMA_ID + '"').encode()
SCHEMA_SHA256 = "2ec9f07595eb55f44fabaed294a55086fb4576dcf37b9236874aa557026e76e2"


def download_wheel(into: Path) -> Path:
    """The cjvalpy wheel for Windows, fetched from PyPI and checked against its pinned hash."""
    requirements = into / "requirements.txt"
    requirements.write_text(f"cjvalpy==0.4.1 --hash=sha256:{WHEEL_SHA256}\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--platform", "win_amd64", "--python-version", "3.11", "--implementation", "cp",
                    "--require-hashes", "-r", str(requirements), "-d", str(into)], check=True)
    return into / WHEEL


def schema_text(wheel: Path) -> bytes:
    """The schema's JSON text, exactly as the validator holds it."""
    with zipfile.ZipFile(wheel) as archive:
        binary = archive.read(MODULE)
    start = binary.find(SCHEMA_START)
    if start < 0:
        raise SystemExit(f"cityjson_schema: no CityJSON 2.0.0 schema in {MODULE}")
    # Other data follows the schema: decode leniently and keep the one JSON value.
    window = binary[start:start + 2_000_000].decode("utf-8", errors="replace")
    _, end = json.JSONDecoder().raw_decode(window)
    text = window[:end].encode("utf-8")
    if binary[start:start + len(text)] != text or hashlib.sha256(text).hexdigest() != SCHEMA_SHA256:
        raise SystemExit(f"cityjson_schema: the schema in {WHEEL} is not the one pinned ({SCHEMA_SHA256})")
    return text


def main(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        text = schema_text(download_wheel(Path(tmp)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(text)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.split("\n\n")[1])
    main(Path(sys.argv[1]))
