@tool
extends EditorPlugin
## Enabling the addon (Project > Project Settings > Plugins) registers the autoload "Sidecar".
## An autoload is a child of the scene tree's root, not of the current scene: changing scenes
## (lobby -> map) never frees it, so the heartbeat goes on.
##
## The autoload is (re-)registered whenever the editor loads the plugin and removed only when the
## plugin is disabled, not when the editor closes: project.godot keeps it, so exports made from
## the command line (godot --headless --export-release) include it.

const AUTOLOAD_NAME := "Sidecar"
const AUTOLOAD_PATH := "res://addons/edgegap_sidecar/edgegap_sidecar.gd"


func _enter_tree() -> void:
	add_autoload_singleton(AUTOLOAD_NAME, AUTOLOAD_PATH)


func _disable_plugin() -> void:
	remove_autoload_singleton(AUTOLOAD_NAME)
