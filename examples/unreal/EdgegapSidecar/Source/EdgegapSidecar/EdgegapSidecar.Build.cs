// The EdgegapSidecar runtime module: Unreal's HTTP client, Json for the bodies and the events,
// DeveloperSettings for the Project Settings page (UE 5.0+).

using UnrealBuildTool;

public class EdgegapSidecar : ModuleRules
{
	public EdgegapSidecar(ReadOnlyTargetRules Target) : base(Target)
	{
		PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;

		PublicDependencyModuleNames.AddRange(new string[]
		{
			"Core",
			"CoreUObject",
			"Engine",
			"DeveloperSettings",
		});

		PrivateDependencyModuleNames.AddRange(new string[]
		{
			"HTTP",
			"Json",
		});
	}
}
