// Unreal Engine 5 game-instance subsystem for the edgegap-sidecar local API (README, *Local API*), with
// Unreal's own HTTP module (FHttpModule). Not compiled in this repository's CI: it needs the
// engine. Add both files to your server module and "HTTP" and "Json" to its
// PublicDependencyModuleNames (Build.cs).
//
//   POST /v1/ready                 ReportReady()            then a heartbeat every few seconds
//   POST /v1/health                the heartbeat timer started by ReportReady()
//   POST /v1/players/connect       PlayerConnected(Id)      body {"player_id": Id}
//   POST /v1/players/disconnect    PlayerDisconnected(Id)   body {"player_id": Id}
//   POST /v1/match/end             MatchEnd(ResultJson)     body {"result": <json>, "grace_seconds"?: n}
//
// Errors ({"error": {"code", "message"}}) are logged and reported to the optional callback,
// never fatal: a sidecar hiccup must not take a live match down. A game already integrated with
// Agones (UAgonesSubsystem) needs none of this: run the sidecar with SIDECAR_AGONES=true
// (docs/agones.md).
//
// Usage, from your GameMode on the dedicated server:
//   auto* Sidecar = GetGameInstance()->GetSubsystem<UEdgegapSidecarSubsystem>();
//   Sidecar->ReportReady();                        // once the game port is open
//   Sidecar->PlayerConnected(PlayerId);            // from PostLogin
//   Sidecar->MatchEnd(TEXT("{\"winner\":\"p1\"}"));  // when the match is decided
// The sidecar then stops the deployment after its grace period; keep running until SIGTERM.

#pragma once

#include "CoreMinimal.h"
#include "Subsystems/GameInstanceSubsystem.h"
#include "TimerManager.h"
#include "EdgegapSidecarSubsystem.generated.h"

DECLARE_DELEGATE_OneParam(FEdgegapSidecarDone, bool /* bOk */);

UCLASS()
class UEdgegapSidecarSubsystem : public UGameInstanceSubsystem
{
	GENERATED_BODY()

public:
	virtual void Initialize(FSubsystemCollectionBase& Collection) override;
	virtual void Deinitialize() override;

	/** Tell the sidecar the server accepts players, then start heartbeats. */
	UFUNCTION(BlueprintCallable, Category = "Edgegap")
	void ReportReady();

	UFUNCTION(BlueprintCallable, Category = "Edgegap")
	void PlayerConnected(const FString& PlayerId);

	UFUNCTION(BlueprintCallable, Category = "Edgegap")
	void PlayerDisconnected(const FString& PlayerId);

	/** ResultJson is any JSON value up to 16 KiB; GraceSeconds < 0 keeps SIDECAR_MATCH_END_GRACE. */
	UFUNCTION(BlueprintCallable, Category = "Edgegap")
	void MatchEnd(const FString& ResultJson, float GraceSeconds = -1.f);

	/** Keep well under SIDECAR_HEALTH_TIMEOUT (30 s by default). */
	UPROPERTY(EditAnywhere, Category = "Edgegap")
	float HeartbeatIntervalSeconds = 5.f;

	/** Per-request timeout in seconds. */
	UPROPERTY(EditAnywhere, Category = "Edgegap")
	float RequestTimeoutSeconds = 2.f;

	/** Connection errors are retried this many times, once a second (the start-up race). */
	UPROPERTY(EditAnywhere, Category = "Edgegap")
	int32 StartupAttempts = 10;

private:
	void Send(const FString& Verb, const FString& Path, const FString& Body, int32 AttemptsLeft,
		FEdgegapSidecarDone Done = FEdgegapSidecarDone());
	void Heartbeat();
	static FString PlayerBody(const FString& PlayerId);

	FString BaseUrl;
	FString Token; // from SIDECAR_API_TOKEN, never from a config file
	FTimerHandle HeartbeatTimer;
};
