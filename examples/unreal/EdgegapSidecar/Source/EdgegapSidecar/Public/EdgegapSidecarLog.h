// The plugin's log category: filter it with -LogCmds="LogEdgegapSidecar Verbose" or in
// DefaultEngine.ini's [Core.Log].

#pragma once

#include "CoreMinimal.h"

EDGEGAPSIDECAR_API DECLARE_LOG_CATEGORY_EXTERN(LogEdgegapSidecar, Log, All);
