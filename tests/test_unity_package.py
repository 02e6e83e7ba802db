"""The Unity package (examples/unity/com.edgegap.sidecar/) compiles and survives a scene change.

Debian's mono-mcs builds the package's Runtime and its sample against stand-ins of the UnityEngine
types they use (tests/unity/UnityEngineStandIns.cs), so a typo or a wrong signature fails CI.
The stand-ins also run a small model of the engine (frames, coroutines that die with their
object, DontDestroyOnLoad, SceneManager.LoadScene destroying what is not persistent, real HTTP for
UnityWebRequest), and tests/unity/SceneChangeHarness.cs plays a lobby -> map scene change under
`mono` against a real sidecar: the heartbeat must go on (the bug of issue 17: a per-scene object
died with its scene and the sidecar stopped the match as `unhealthy`). .ci/run installs mono-mcs
and mono-runtime; elsewhere the tests skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.client import SidecarClient
from tests.conftest import ROOT, wait_for
from tests.test_examples import Harness

PACKAGE = ROOT / "examples" / "unity" / "com.edgegap.sidecar"
RUNTIME = sorted((PACKAGE / "Runtime").glob("*.cs"))
SAMPLE = PACKAGE / "Samples~" / "ServerBootstrap" / "ServerBootstrap.cs"
STAND_INS = ROOT / "tests" / "unity" / "UnityEngineStandIns.cs"
SCENE_HARNESS = ROOT / "tests" / "unity" / "SceneChangeHarness.cs"


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run installs it (apt-get install {package})")
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return found


def compile_cs(out: Path, *sources: Path, library: bool = True) -> subprocess.CompletedProcess[str]:
    target = ["-target:library"] if library else []
    return subprocess.run(
        [tool("mcs", "mono-mcs"), *target, f"-out:{out}", *map(str, sources)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.close()


class TestUnityPackageLayout:
    def test_package_manifest_and_assembly_definition(self) -> None:
        """A UPM package: package.json names it and its sample; the Runtime has an asmdef."""
        manifest = json.loads((PACKAGE / "package.json").read_text())
        assert manifest["name"] == "com.edgegap.sidecar"
        assert manifest["unity"] == "2021.3"
        for sample in manifest["samples"]:
            assert (PACKAGE / sample["path"]).is_dir()
        asmdef = json.loads((PACKAGE / "Runtime" / "Edgegap.Sidecar.asmdef").read_text())
        assert asmdef["name"] == "Edgegap.Sidecar"
        # Unity imports Samples~ only on request; the sample must not be in Runtime.
        assert SAMPLE.is_file()

    def test_every_asset_has_a_meta_file(self) -> None:
        """Unity ignores an asset without a .meta in an immutable package (a git URL install):
        every file and folder outside Samples~ has one, with its own GUID."""
        guids = []
        for path in sorted(PACKAGE.rglob("*")):
            relative = path.relative_to(PACKAGE)
            if relative.parts[0] == "Samples~" or path.suffix == ".meta":
                continue
            meta = path.with_name(path.name + ".meta")
            assert meta.is_file(), f"{relative} has no .meta"
            guid = re.search(r"^guid: ([0-9a-f]{32})$", meta.read_text(), re.MULTILINE)
            assert guid is not None, meta
            guids.append(guid.group(1))
        assert len(guids) == len(set(guids))


class TestUnityPackageCompiles:
    def test_compiles_against_the_unity_stand_ins(self, tmp_path: Path) -> None:
        """The Runtime and the sample as shipped compile with no error."""
        result = compile_cs(tmp_path / "package.dll", *RUNTIME, SAMPLE, STAND_INS)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (tmp_path / "package.dll").is_file()

    def test_a_typo_fails_the_build(self, tmp_path: Path) -> None:
        """The check has teeth: a misspelt Unity member is a compile error."""
        source = PACKAGE / "Runtime" / "EdgegapSidecar.cs"
        broken = tmp_path / "EdgegapSidecar.cs"
        broken.write_text(source.read_text().replace("request.responseCode", "request.responseCod"))
        others = [path for path in RUNTIME if path != source]
        result = compile_cs(tmp_path / "package.dll", broken, *others, STAND_INS)
        assert result.returncode != 0
        assert "responseCod" in result.stdout + result.stderr


def play_scene_change(
    harness: Harness, tmp_path: Path, runtime: list[Path], *, mode: str | None = None
) -> tuple[dict[str, list[str]], SidecarClient]:
    """Build the harness with these Runtime sources and run it against a fresh sidecar."""
    exe = tmp_path / "harness.exe"
    built = compile_cs(exe, *runtime, STAND_INS, SCENE_HARNESS, library=False)
    assert built.returncode == 0, built.stdout + built.stderr
    mono = tool("mono", "mono-runtime")
    # A 2 s health timeout and a 0.2 s heartbeat: 3 s without beats after the scene change
    # is a certain `unhealthy` stop, a live loop a certain pass.
    _, client = harness.sidecar(SIDECAR_HEALTH_TIMEOUT="2s")
    port = client.base_url.rsplit(":", 1)[1]
    env = {"PATH": os.environ.get("PATH", ""), "SIDECAR_PORT": port, "HOME": str(tmp_path)}
    run = subprocess.run(
        [mono, str(exe), "3", *([mode] if mode else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines: dict[str, list[str]] = {}
    for line in run.stdout.splitlines():
        key, _, value = line.rpartition(" ")
        lines.setdefault(key, []).append(value)
    return lines, client


class TestUnitySceneChange:
    def test_heartbeat_survives_a_scene_change_and_events_arrive(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """Lobby -> map: the lobby dies, the sidecar object does not (the map's copy removes
        itself), the heartbeat goes on, every route answers, and Draining/Stopping arrive."""
        out, client = play_scene_change(harness, tmp_path, RUNTIME)
        assert out["active"] == ["True"]
        assert out["ready"] == ["200"]
        assert out["lobby_destroyed"] == ["True"]
        assert out["same_instance"] == ["True"]
        assert out["map_copy_removed"] == ["True"]
        assert out["health_loop"] == ["True"]
        assert out["state_after_scene_change"] == ["ready"]
        for route in ("connect", "disconnect", "set_players", "set_count", "hold", "activity"):
            assert out[f"route {route}"] == ["200"], route
        for route in ("health", "match_start", "deployment"):
            assert out[f"route {route}"] == ["200"], route
        assert out["route players"] == ["2"]
        assert out["route status"] == ["active"]
        assert out["route match_end"] == ["202"]
        assert out["route shutdown"] == ["202"]
        # The match routes: without match data a named ticket is unknown, the match is empty.
        assert out["route connect_ticket"][0] == "unknown_ticket"
        assert out["route match"][0] == "200"
        assert out["route ticket"] == ["404"]
        assert out["event draining"] == ["match_ended"]
        assert out["event stopping"][0] in {"stopping", "stopped"}
        assert "ready" in out["event state"]
        assert "draining" in out["event state"]
        assert out["goodbye players"] == ["told"]
        assert client.status()["stop_reason"] == "match_ended"

    def test_without_dont_destroy_on_load_the_match_dies(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """The test has teeth: the same package without DontDestroyOnLoad loses its heartbeat
        with the lobby scene, and the sidecar stops the deployment as `unhealthy`."""
        source = PACKAGE / "Runtime" / "EdgegapSidecar.cs"
        text = source.read_text()
        assert "DontDestroyOnLoad(gameObject);" in text
        broken = tmp_path / "EdgegapSidecar.cs"
        broken.write_text(text.replace("DontDestroyOnLoad(gameObject);", ""))
        runtime = [broken, *(path for path in RUNTIME if path != source)]
        out, client = play_scene_change(harness, tmp_path, runtime, mode="scene-only")
        assert out["same_instance"] == ["False"]
        reason = wait_for(
            lambda: client.status()["stop_reason"], what="the sidecar to decide a stop", timeout=10
        )
        assert reason == "unhealthy"

    def test_a_client_build_does_nothing(self, harness: Harness, tmp_path: Path) -> None:
        """Not batch mode, not UNITY_SERVER: no object is created at start-up, calls answer
        Skipped without a request, and no heartbeat runs."""
        out, client = play_scene_change(harness, tmp_path, RUNTIME, mode="client")
        assert out["active"] == ["False"]
        assert out["auto_created"] == ["0"]
        assert out["ready_skipped"] == ["True"]
        assert out["health_loop"] == ["False"]
        assert client.status()["state"] == "starting"
