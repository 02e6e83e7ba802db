"""The engine packages in examples/ beside Unity's (tests/test_unity_package.py): the Node package,
the Godot 4 addon and the Unreal Engine 5 plugin.

* Node runs for real: the folder is installed as a package (a node_modules link) and imported by
  its name against a live sidecar; its .d.ts declares exactly the client's methods.
* Godot's GDScript passes gdtoolkit's gdparse and gdlint (no Godot engine here).
* Unreal's plugin is checked for structure only, honestly: there is no Unreal toolchain here, so
  nothing claims it compiles. The .uplugin parses and names the module, Build.cs names every
  module whose headers the sources include, settings come from config, the subsystem is
  server-only and logs to its own category.
* Every engine covers every route of the local API's OpenAPI document, plus SPEC §12's match
  routes (GET /v1/match, GET /v1/match/tickets/{id}).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.openapi import document
from tests.conftest import ROOT
from tests.test_examples import Harness, clean_env

EXAMPLES = ROOT / "examples"
NODE = EXAMPLES / "node"
GODOT_ADDON = EXAMPLES / "godot" / "addons" / "edgegap_sidecar"
UNREAL = EXAMPLES / "unreal" / "EdgegapSidecar"
UNREAL_MODULE = UNREAL / "Source" / "EdgegapSidecar"
UNITY = EXAMPLES / "unity" / "com.edgegap.sidecar" / "Runtime"

# SPEC §12's match routes, being added to the sidecar beside these packages.
MATCH_ROUTES = {"/v1/match", "/v1/match/tickets/"}
# Served for operators and tools, not called by games.
NOT_FOR_GAMES = {"/healthz", "/metrics", "/openapi.json"}


def game_routes() -> set[str]:
    """The local API's routes a game calls, as path prefixes (templates cut at the first `{`)."""
    paths = {path.split("{", 1)[0] for path in document(token_required=False)["paths"]}
    return (paths - NOT_FOR_GAMES) | MATCH_ROUTES


def sources(*patterns: tuple[Path, str]) -> str:
    return "\n".join(
        path.read_text() for folder, glob in patterns for path in sorted(folder.rglob(glob))
    )


ENGINE_SOURCES = {
    "unity": lambda: sources((UNITY, "*.cs")),
    "unreal": lambda: sources((UNREAL_MODULE, "*.cpp")),
    "godot": lambda: sources((GODOT_ADDON, "*.gd")),
    "node": lambda: sources((NODE, "sidecar-client.mjs")),
}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.close()


class TestRouteCoverage:
    def test_the_route_list_is_the_api(self) -> None:
        """The list the engines are held to is not empty and has the lifecycle in it."""
        routes = game_routes()
        assert {"/v1/ready", "/v1/health", "/v1/match/end", "/v1/events"} <= routes

    @pytest.mark.parametrize("engine", sorted(ENGINE_SOURCES))
    def test_every_route_is_covered(self, engine: str) -> None:
        """Each engine's code calls every route a game uses (a quoted path in its source)."""
        text = ENGINE_SOURCES[engine]()
        missing = {route for route in game_routes() if f'"{route}' not in text}
        # Unreal writes literals as TEXT("..."), Node the ticket route as a template.
        missing = {
            route for route in missing if f'("{route}' not in text and f"`{route}" not in text
        }
        assert not missing, f"{engine} does not call {sorted(missing)}"

    @pytest.mark.parametrize("engine", sorted(ENGINE_SOURCES))
    def test_put_players_and_ticket_on_connect(self, engine: str) -> None:
        """Two details a path check misses: the roster is a PUT, and connect can name a ticket."""
        text = ENGINE_SOURCES[engine]()
        assert re.search(r"PUT", text), engine
        assert "ticket_id" in text, engine


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
class TestNodePackage:
    def test_manifest(self) -> None:
        """An ES-module package whose exports and types point at files that exist."""
        manifest = json.loads((NODE / "package.json").read_text())
        assert manifest["type"] == "module"
        entry = manifest["exports"]["."]
        assert (NODE / entry["default"]).is_file()
        assert (NODE / entry["types"]).is_file()
        assert manifest["types"] == entry["types"]
        for name in manifest["files"]:
            assert (NODE / name).is_file()
        check = subprocess.run(
            ["node", "--check", str(NODE / entry["default"])], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr

    def install(self, tmp_path: Path) -> Path:
        """What `npm install examples/node` makes: a link under node_modules, by package name."""
        app = tmp_path / "app"
        modules = app / "node_modules"
        modules.mkdir(parents=True)
        name = json.loads((NODE / "package.json").read_text())["name"]
        (modules / name).symlink_to(NODE, target_is_directory=True)
        (app / "package.json").write_text('{"type": "module"}')
        return app

    def run(self, app: Path, script: str, port: str) -> subprocess.CompletedProcess[str]:
        (app / "main.mjs").write_text(script)
        return subprocess.run(
            ["node", "main.mjs"],
            cwd=app,
            env=clean_env(SIDECAR_PORT=port),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def test_declared_methods_exist(self, tmp_path: Path) -> None:
        """The .d.ts declares exactly the client's methods and exports (no tsc needed)."""
        declared_text = (NODE / "sidecar-client.d.ts").read_text()
        body = declared_text.split("export declare class SidecarClient", 1)[1]
        declared = set(re.findall(r"^  (\w+)\(", body, re.MULTILINE)) - {"constructor"}
        exports = set(re.findall(r"^export declare (?:const|class) (\w+)", declared_text, re.M))
        app = self.install(tmp_path)
        run = self.run(
            app,
            'import * as pkg from "edgegap-sidecar-client";\n'
            "const proto = Object.getOwnPropertyNames(pkg.SidecarClient.prototype)"
            '.filter((name) => name !== "constructor");\n'
            "console.log(JSON.stringify({ exports: Object.keys(pkg), methods: proto }));\n",
            "1",
        )
        assert run.returncode == 0, run.stderr
        found = json.loads(run.stdout)
        assert set(found["methods"]) == declared
        assert set(found["exports"]) == exports

    def test_installed_package_talks_to_a_sidecar(self, harness: Harness, tmp_path: Path) -> None:
        """Imported by name, the client reports ready, a player, the match and a ticket check."""
        _, client = harness.sidecar()
        app = self.install(tmp_path)
        script = """
            import { SidecarClient, SidecarAPIError } from "edgegap-sidecar-client";
            const sidecar = new SidecarClient();
            await sidecar.ready();
            const out = { count: await sidecar.connect("p1") };
            for (const [name, call] of [
              ["ticket_connect", () => sidecar.connect("p2", { ticketId: "t-unknown" })],
              ["ticket", () => sidecar.ticket("t-unknown")],
              ["match", () => sidecar.match()],
            ]) {
              try { await call(); out[name] = "ok"; }
              catch (error) { out[name] = error instanceof SidecarAPIError ? error.status : "?"; }
            }
            console.log(JSON.stringify(out));
        """
        run = self.run(app, script, client.base_url.rsplit(":", 1)[1])
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["count"] == 1
        # Without match data a named ticket is unknown (422 unknown_ticket), a ticket lookup is
        # 404 unknown_ticket, and the match is the empty one (200).
        assert out["ticket_connect"] == 422
        assert out["ticket"] == 404
        assert out["match"] == "ok"
        assert client.status()["players"]["count"] == 1


def gdtool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: it comes with the test extras (gdtoolkit)")
        pytest.skip(f"{name} is not installed (pip install gdtoolkit)")
    return found


class TestGodotAddon:
    def test_plugin_cfg_names_the_script(self) -> None:
        """plugin.cfg is the addon's manifest; its script registers the autoload on entering
        the tree, pointing at the client script that exists."""
        cfg = (GODOT_ADDON / "plugin.cfg").read_text()
        assert "[plugin]" in cfg
        script = re.search(r'^script="([^"]+)"$', cfg, re.MULTILINE)
        assert script is not None
        plugin = (GODOT_ADDON / script.group(1)).read_text()
        assert "extends EditorPlugin" in plugin
        enter = plugin.split("func _enter_tree", 1)[1].split("\nfunc ", 1)[0]
        assert "add_autoload_singleton(AUTOLOAD_NAME, AUTOLOAD_PATH)" in enter
        path = re.search(r'AUTOLOAD_PATH := "res://(.+)"', plugin)
        assert path is not None
        assert (EXAMPLES / "godot" / path.group(1)).is_file()

    def test_gdscript_parses_and_lints(self) -> None:
        """Both scripts pass gdtoolkit's parser and linter."""
        scripts = sorted(map(str, GODOT_ADDON.glob("*.gd")))
        assert len(scripts) == 2
        for tool in ("gdparse", "gdlint"):
            run = subprocess.run(
                [gdtool(tool), *scripts], capture_output=True, text=True, timeout=120
            )
            assert run.returncode == 0, run.stdout + run.stderr

    def test_the_linter_has_teeth(self, tmp_path: Path) -> None:
        """A broken script fails: a syntax error the parser, a bad name the linter."""
        broken = tmp_path / "broken.gd"
        broken.write_text("extends Node\nfunc report_ready( -> void:\n\tpass\n")
        parsed = subprocess.run([gdtool("gdparse"), str(broken)], capture_output=True, timeout=60)
        assert parsed.returncode != 0
        broken.write_text("extends Node\nvar BadName := 1\n")
        linted = subprocess.run([gdtool("gdlint"), str(broken)], capture_output=True, timeout=60)
        assert linted.returncode != 0


# Headers the plugin includes -> the module that provides them (what Build.cs must name).
UNREAL_HEADER_MODULES = {
    "HttpModule.h": "HTTP",
    "Interfaces/IHttpRequest.h": "HTTP",
    "Interfaces/IHttpResponse.h": "HTTP",
    "GenericPlatform/GenericPlatformHttp.h": "HTTP",
    "Dom/JsonObject.h": "Json",
    "Serialization/JsonSerializer.h": "Json",
    "Serialization/JsonReader.h": "Json",
    "Serialization/JsonWriter.h": "Json",
    "Engine/DeveloperSettings.h": "DeveloperSettings",
    "Subsystems/GameInstanceSubsystem.h": "Engine",
    "Engine/GameInstance.h": "Engine",
    "TimerManager.h": "Engine",
}


class TestUnrealPlugin:
    def test_uplugin_names_the_module(self) -> None:
        """The .uplugin parses and declares one runtime module, whose Build.cs exists."""
        plugin = json.loads((UNREAL / "EdgegapSidecar.uplugin").read_text())
        assert plugin["FileVersion"] == 3
        (module,) = plugin["Modules"]
        assert module["Name"] == "EdgegapSidecar"
        assert module["Type"] == "Runtime"
        assert (UNREAL_MODULE / "EdgegapSidecar.Build.cs").is_file()
        assert (UNREAL_MODULE / "Public").is_dir()
        assert (UNREAL_MODULE / "Private").is_dir()

    def test_build_cs_names_every_module_it_uses(self) -> None:
        """Every engine header the sources include comes from a module Build.cs depends on."""
        build = (UNREAL_MODULE / "EdgegapSidecar.Build.cs").read_text()
        assert "class EdgegapSidecar : ModuleRules" in build
        named = set(re.findall(r'"(\w+)"', build))
        code = sources((UNREAL_MODULE, "*.h"), (UNREAL_MODULE, "*.cpp"))
        included = set(re.findall(r'#include "([^"]+)"', code))
        own = {path.name for path in UNREAL_MODULE.rglob("*.h")} | {
            "EdgegapSidecarSubsystem.generated.h",
            "EdgegapSidecarSettings.generated.h",
        }
        needed = {UNREAL_HEADER_MODULES[h] for h in included if h in UNREAL_HEADER_MODULES}
        assert {"HTTP", "Json", "DeveloperSettings", "Engine"} <= needed
        assert needed <= named, f"Build.cs misses {sorted(needed - named)}"
        # Core headers (CoreMinimal, HAL, Async, Misc, Modules, Serialization/Archive) are in
        # Core, which every module names; anything else must be mapped above.
        core = re.compile(r"^(CoreMinimal\.h|HAL/|Async/|Misc/|Modules/|Serialization/Archive)")
        unknown = {h for h in included - own if h not in UNREAL_HEADER_MODULES}
        assert not {h for h in unknown if not core.match(h)}
        assert "Core" in named

    def test_settings_come_from_config(self) -> None:
        """UDeveloperSettings in DefaultGame.ini; every property is Config (not a per-instance
        EditAnywhere on a subsystem, which does nothing)."""
        settings = (UNREAL_MODULE / "Public" / "EdgegapSidecarSettings.h").read_text()
        assert re.search(r"UCLASS\(Config = Game, defaultconfig", settings)
        assert "public UDeveloperSettings" in settings
        properties = re.findall(r"UPROPERTY\(([^)]*)\)", settings)
        assert properties
        assert all(p.startswith("Config, EditAnywhere") for p in properties)
        subsystem = (UNREAL_MODULE / "Public" / "EdgegapSidecarSubsystem.h").read_text()
        assert "EditAnywhere" not in subsystem

    def test_server_only_with_its_own_log_category(self) -> None:
        """ShouldCreateSubsystem creates it on dedicated servers only; it logs to
        LogEdgegapSidecar, declared once and defined once; the module is implemented."""
        header = (UNREAL_MODULE / "Public" / "EdgegapSidecarSubsystem.h").read_text()
        code = (UNREAL_MODULE / "Private" / "EdgegapSidecarSubsystem.cpp").read_text()
        assert "virtual bool ShouldCreateSubsystem(UObject* Outer) const override;" in header
        should = code.split("::ShouldCreateSubsystem", 1)[1].split("\n}\n", 1)[0]
        assert "IsRunningDedicatedServer()" in should
        log = (UNREAL_MODULE / "Public" / "EdgegapSidecarLog.h").read_text()
        assert "DECLARE_LOG_CATEGORY_EXTERN(LogEdgegapSidecar, Log, All);" in log
        module = (UNREAL_MODULE / "Private" / "EdgegapSidecarModule.cpp").read_text()
        assert "DEFINE_LOG_CATEGORY(LogEdgegapSidecar);" in module
        assert "IMPLEMENT_MODULE(FDefaultModuleImpl, EdgegapSidecar);" in module
        assert "LogTemp" not in code
        assert "UE_LOG(LogEdgegapSidecar" in code

    def test_events_are_delegates(self) -> None:
        """The event stream becomes Blueprint-assignable delegates the game can bind."""
        header = (UNREAL_MODULE / "Public" / "EdgegapSidecarSubsystem.h").read_text()
        for name in ("OnStateChanged", "OnDraining", "OnStopping"):
            assert re.search(rf"UPROPERTY\(BlueprintAssignable[^)]*\)\s+\w+ {name};", header)
