"""The official protobuf classes and grpcio stubs of Agones' SDK, generated for the tests.

sidecar/agones/proto/*.proto are Agones' files as published; their HTTP-gateway and OpenAPI
options import googleapis protos that grpcio-tools does not ship, and change nothing on the
gRPC wire. `generate()` strips those options and imports, compiles the rest with grpcio-tools'
protoc into a temporary folder, and imports the result: `sdk_pb2`, `sdk_pb2_grpc`, `alpha_pb2`...
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from types import ModuleType

PROTOS = Path(__file__).resolve().parent.parent / "sidecar" / "agones" / "proto"
NAMES = ("sdk", "alpha", "beta")


def _drop_balanced(text: str, start: int, opening: str, closing: str) -> int:
    """The index just past the `closing` that balances the first `opening` from `start`."""
    depth = 0
    at = text.index(opening, start)
    while True:
        char = text[at]
        if char == '"':
            at = text.index('"', at + 1)
        elif char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return at + 1
        at += 1


def strip_options(source: str) -> str:
    """The .proto without comments, `option (...) = ...;` statements, `[...]` field options and
    the imports only those used."""
    source = re.sub(r"//[^\n]*", "", source)
    out = []
    at = 0
    while at < len(source):
        option = re.compile(r"option\s*\(").search(source, at)
        bracket = source.find("[", at)
        if option is None and bracket < 0:
            out.append(source[at:])
            break
        if option is not None and (bracket < 0 or option.start() < bracket):
            out.append(source[at : option.start()])
            end = source.index(";", option.start())
            brace = source.find("{", option.start())
            if 0 <= brace < end:
                end = source.index(";", _drop_balanced(source, option.start(), "{", "}"))
            at = end + 1
        else:
            out.append(source[at:bracket])
            at = _drop_balanced(source, bracket, "[", "]")
    stripped = "".join(out)
    stripped = re.sub(r'import\s+"(google/api|protoc-gen-openapiv2)/[^"]+";', "", stripped)
    return stripped


def generate(folder: Path) -> dict[str, ModuleType]:
    """Compile the three protos into `folder` and import them (pb2 and pb2_grpc)."""
    from grpc_tools import protoc

    for name in NAMES:
        (folder / f"{name}.proto").write_text(strip_options((PROTOS / f"{name}.proto").read_text()))
    include = str(Path(protoc.__file__).parent / "_proto")
    for name in NAMES:
        code = protoc.main(
            [
                "protoc",
                f"-I{folder}",
                f"-I{include}",
                f"--python_out={folder}",
                f"--grpc_python_out={folder}",
                str(folder / f"{name}.proto"),
            ]
        )
        assert code == 0, f"protoc failed on {name}.proto"
    sys.path.insert(0, str(folder))
    try:
        modules = {}
        for name in NAMES:
            modules[f"{name}_pb2"] = importlib.import_module(f"{name}_pb2")
            modules[f"{name}_pb2_grpc"] = importlib.import_module(f"{name}_pb2_grpc")
        return modules
    finally:
        sys.path.remove(str(folder))
