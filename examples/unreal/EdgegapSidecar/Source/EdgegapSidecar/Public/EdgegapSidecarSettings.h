// Project Settings > Plugins > Edgegap Sidecar, saved in Config/DefaultGame.ini under
// [/Script/EdgegapSidecar.EdgegapSidecarSettings]. The API token is never a setting: it comes
// from SIDECAR_API_TOKEN at run time, so it never lands in a config file.

#pragma once

#include "CoreMinimal.h"
#include "Engine/DeveloperSettings.h"
#include "EdgegapSidecarSettings.generated.h"

UCLASS(Config = Game, defaultconfig, meta = (DisplayName = "Edgegap Sidecar"))
class EDGEGAPSIDECAR_API UEdgegapSidecarSettings : public UDeveloperSettings
{
	GENERATED_BODY()

public:
	/** Local API URL; empty = http://$SIDECAR_HOST:$SIDECAR_PORT (127.0.0.1:8787). */
	UPROPERTY(Config, EditAnywhere, Category = "Sidecar")
	FString BaseUrl;

	/** Seconds between heartbeats; keep well under SIDECAR_HEALTH_TIMEOUT (30 s). */
	UPROPERTY(Config, EditAnywhere, Category = "Sidecar", meta = (ClampMin = "0.5"))
	float HeartbeatIntervalSeconds = 5.f;

	/** Per-request timeout in seconds. */
	UPROPERTY(Config, EditAnywhere, Category = "Sidecar", meta = (ClampMin = "0.5"))
	float RequestTimeoutSeconds = 2.f;

	/** Follow GET /v1/events and broadcast OnStateChanged, OnDraining and OnStopping. */
	UPROPERTY(Config, EditAnywhere, Category = "Sidecar")
	bool bListenToEvents = true;

	/** Create the subsystem outside dedicated servers too (PIE, listen servers): for tests.
	 *  The environment variable EDGEGAP_SIDECAR_ENABLE=true does the same. */
	UPROPERTY(Config, EditAnywhere, Category = "Sidecar")
	bool bForceEnable = false;

	virtual FName GetCategoryName() const override { return TEXT("Plugins"); }
};
