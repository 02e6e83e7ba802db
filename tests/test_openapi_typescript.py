"""TypeScript types generated from the local API's document are complete: `openapi-typescript`
(pinned in tests/openapi_ts/package-lock.json) turns the document into types, and the TypeScript
compiler checks a file that names every operation by its path and method and by its operationId,
and builds both kinds of roster body. A dropped operation or an unusable body is a compile error.

CI installs the tools (.ci/run: `npm ci` in tests/openapi_ts); without node or the installed
packages the test is skipped on a laptop, and fails in CI, where a missing tool must not hide it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sidecar import openapi

TS_DIR = Path(__file__).resolve().parent / "openapi_ts"
BIN = TS_DIR / "node_modules" / ".bin"
NODE = shutil.which("node")
METHODS = {"get", "put", "post", "delete", "patch"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        (NODE is None or not (BIN / "openapi-typescript").exists() or not (BIN / "tsc").exists())
        and not os.environ.get("CI"),
        reason="needs node, openapi-typescript and tsc: `npm ci --prefix tests/openapi_ts`",
    ),
]


def _run(*command: str | Path, cwd: Path) -> None:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_operation_is_in_the_generated_types(tmp_path: Path) -> None:
    """Every operation of the document (the token variant: the one with the most answers) is
    in the generated `paths` and `operations` types, as the same type, and the roster's body
    takes ids or a count, each alone."""
    document = openapi.document(token_required=True)
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    _run(BIN / "openapi-typescript", "openapi.json", "-o", "api.d.ts", cwd=tmp_path)
    lines = ['import type { operations, paths } from "./api";', ""]
    count = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                count += 1
                lines.append(
                    f'export const op{count}: operations["{operation["operationId"]}"] = '
                    f'null as unknown as paths["{path}"]["{method}"];'
                )
    roster = 'NonNullable<operations["setPlayers"]["requestBody"]>["content"]["application/json"]'
    lines += [
        f"type Roster = {roster};",
        'export const byIds: Roster = { player_ids: ["alice", "bob"] };',
        "export const byCount: Roster = { count: 3 };",
        # A typed body, not `unknown`: a wrong one must not compile.
        "// @ts-expect-error",
        'export const neither: Roster = { players: ["alice"] };',
    ]
    (tmp_path / "check.ts").write_text("\n".join(lines) + "\n")
    assert count == 19
    _run(
        BIN / "tsc",
        *("--noEmit", "--strict", "--target", "es2022", "--module", "nodenext"),
        "check.ts",
        cwd=tmp_path,
    )
    # The check is live: an operation the types lack is a compile error.
    (tmp_path / "missing.ts").write_text(
        'import type { operations } from "./api";\n'
        'export const gone: operations["noSuchOperation"] = null as never;\n'
    )
    with pytest.raises(AssertionError, match="noSuchOperation"):
        _run(
            BIN / "tsc", "--noEmit", "--strict", "--module", "nodenext", "missing.ts", cwd=tmp_path
        )
