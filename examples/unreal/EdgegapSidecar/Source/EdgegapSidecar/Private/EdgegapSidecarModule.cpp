#include "EdgegapSidecarLog.h"
#include "Modules/ModuleManager.h"

DEFINE_LOG_CATEGORY(LogEdgegapSidecar);

IMPLEMENT_MODULE(FDefaultModuleImpl, EdgegapSidecar);
