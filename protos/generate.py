"""Generate the Python gRPC/protobuf modules in ``gateway/_proto/`` from ``protos/*.proto``.

Usage (from anywhere)::

    python protos/generate.py [--out DIR]

``DIR`` defaults to the repository root; the modules land in ``DIR/gateway/_proto/``. For each
``protos/NAME.proto`` the result is ``NAME_pb2.py``, ``NAME_pb2.pyi`` and ``NAME_pb2_grpc.py``
(the last one also for files without services; it is then nearly empty).

What it does, and why:

1. Runs ``grpc_tools.protoc`` with ``-Igateway/_proto=protos``: protoc sees each file as
   ``gateway/_proto/NAME.proto``, so generated imports read
   ``from gateway._proto import NAME_pb2``. Consequently a ``.proto`` here imports another one
   as ``import "gateway/_proto/inference.proto";``.
2. Rewrites each ``*_pb2.py`` to register its file into the private pool
   ``gateway._proto.POOL`` instead of protobuf's default pool (see ``gateway/_proto/__init__.py``
   for why), and to copy each imported ``.proto`` that is not ours (e.g. a well-known type) into
   that pool first. The rewrite is exact: if protoc's output ever changes shape, it stops with
   an error instead of guessing.
3. Replaces the generated files in the target only after everything succeeded, removing
   generated files whose ``.proto`` no longer exists.

Output is byte-for-byte reproducible for a given ``grpcio-tools`` version, so the script refuses
to run with any version other than the one pinned in ``pyproject.toml``; ``tests/test_protos.py``
regenerates and compares with the committed files.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
PACKAGE_DIR = "gateway/_proto"
PACKAGE = PACKAGE_DIR.replace("/", ".")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

# The one line of protoc's Python output that registers the file in the default pool.
_DEFAULT_POOL_LINE = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL_LINE = "DESCRIPTOR = _POOL.AddSerializedFile("
# protoc marks the end of the import block with this line; our imports go right before it.
_IMPORTS_END_LINE = "# @@protoc_insertion_point(imports)"
# An import of another generated module: `from a.b import c_pb2 as alias`.
_PB2_IMPORT = re.compile(r"^from (?P<package>[\w.]+) import \w+_pb2 as (?P<alias>\w+)$", re.M)


class GenerateError(Exception):
    """Generation failed; the message says why. Nothing in the target was changed."""


def pinned_grpcio_tools_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """Return the ``grpcio-tools==X`` version pinned in the project's optional dependencies."""
    with pyproject.open("rb") as f:
        extras = tomllib.load(f)["project"].get("optional-dependencies", {})
    pins = {
        requirement.split("==", 1)[1].strip()
        for requirements in extras.values()
        for requirement in requirements
        if requirement.replace(" ", "").startswith("grpcio-tools==")
    }
    if len(pins) != 1:
        raise GenerateError(f"{pyproject}: expected one grpcio-tools==X pin, found {sorted(pins)}")
    return pins.pop()


def check_generator_version() -> None:
    """Raise :class:`GenerateError` unless the installed grpcio-tools is the pinned one."""
    pinned = pinned_grpcio_tools_version()
    try:
        installed = metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        raise GenerateError(
            f"grpcio-tools is not installed; install grpcio-tools=={pinned}"
        ) from None
    if installed != pinned:
        raise GenerateError(
            f"grpcio-tools {installed} is installed but pyproject.toml pins {pinned}; "
            f"other versions generate different code. Install grpcio-tools=={pinned}."
        )


def rewrite_pb2(source: str, name: str) -> str:
    """Make one generated ``*_pb2.py`` register into ``gateway._proto.POOL``.

    ``name`` is used in error messages only. Raises :class:`GenerateError` when the expected
    lines are not each found exactly once.
    """
    for expected in (_DEFAULT_POOL_LINE, _IMPORTS_END_LINE):
        count = source.count(expected)
        if count != 1:
            raise GenerateError(
                f"{name}: expected {expected!r} exactly once in protoc's output, found it "
                f"{count} times; protoc's output changed shape, update protos/generate.py"
            )
    imports = [f"from {PACKAGE} import POOL as _POOL"]
    # protoc imports the .proto dependencies after its insertion point, so they are copied into
    # the pool right before this file is added, not at the insertion point.
    foreign = [m["alias"] for m in _PB2_IMPORT.finditer(source) if m["package"] != PACKAGE]
    if foreign:
        imports.append(f"from {PACKAGE} import adopt as _adopt")
    adopts = [f"_adopt({alias}.DESCRIPTOR)" for alias in foreign]
    source = source.replace(_IMPORTS_END_LINE, "\n".join([*imports, _IMPORTS_END_LINE]))
    return source.replace(_DEFAULT_POOL_LINE, "\n".join([*adopts, _PRIVATE_POOL_LINE]))


def generate(out: Path) -> list[Path]:
    """Generate every ``protos/*.proto`` into ``out/gateway/_proto``; return the files written.

    Raises :class:`GenerateError` on any failure, before touching ``out``.
    """
    check_generator_version()
    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        raise GenerateError(f"no .proto files in {PROTO_DIR}")
    with tempfile.TemporaryDirectory(prefix="modelgate-protoc-") as tmp:
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PACKAGE_DIR}={PROTO_DIR.relative_to(ROOT)}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--pyi_out={tmp}",
            *(str(p.relative_to(ROOT)) for p in protos),
        ]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise GenerateError(f"protoc failed ({result.returncode}):\n{result.stderr.strip()}")
        generated = Path(tmp) / PACKAGE_DIR
        files: dict[str, bytes] = {}
        for proto in protos:
            for suffix in GENERATED_SUFFIXES:
                name = proto.stem + suffix
                path = generated / name
                if not path.is_file():
                    raise GenerateError(f"protoc did not write {PACKAGE_DIR}/{name}")
                data = path.read_bytes()
                if suffix == "_pb2.py":
                    data = rewrite_pb2(data.decode("utf-8"), name).encode("utf-8")
                files[name] = data

    target = out / PACKAGE_DIR
    target.mkdir(parents=True, exist_ok=True)
    for old in sorted(target.iterdir()):
        if old.name.endswith(GENERATED_SUFFIXES) and old.name not in files:
            old.unlink()
    written = []
    for name, data in files.items():
        path = target / name
        path.write_bytes(data)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT,
        help=f"root to write {PACKAGE_DIR}/ under (default: the repository root, {ROOT})",
    )
    args = parser.parse_args(argv)
    try:
        written = generate(args.out.resolve())
    except GenerateError as e:
        print(f"generate.py: {e}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
