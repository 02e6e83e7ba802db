// Unreal Engine 5 plugin for the edgegap-sidecar local API (README, *Local API*; the matchmaker
// routes in docs/integration.md), with Unreal's HTTP module. Not compiled in this repository's CI (it needs the engine);
// tests/test_engine_packages.py checks the plugin's structure and that every route is covered.
//
// A game-instance subsystem: it lives as long as the game instance, so map travel (lobby -> map,
// seamless or not) never stops the heartbeat. Created only on a dedicated server
// (IsRunningDedicatedServer()), unless bForceEnable or EDGEGAP_SIDECAR_ENABLE=true. Settings:
// Project Settings > Plugins > Edgegap Sidecar (UEdgegapSidecarSettings, DefaultGame.ini).
//
//   POST /v1/ready                 ReportReady()              then the heartbeat timer starts
//   POST /v1/health                Health(), and the timer every HeartbeatIntervalSeconds
//   POST /v1/activity              Activity()
//   POST /v1/players/connect       PlayerConnected(Id, TicketId)
//   POST /v1/players/disconnect    PlayerDisconnected(Id)
//   PUT  /v1/players               SetPlayers(Ids) / SetPlayerCount(N)
//   GET  /v1/players               GetPlayers()
//   POST /v1/hold                  Hold(Seconds)
//   POST /v1/match/start           MatchStart(MatchId)
//   POST /v1/match/end             MatchEnd(ResultJson, GraceSeconds)
//   POST /v1/shutdown              Shutdown(Reason, GraceSeconds, LogStorage)
//   GET  /v1/status                GetStatus()
//   GET  /v1/deployment            GetDeployment()
//   GET  /v1/match                 GetMatch()
//   GET  /v1/match/tickets/{id}    GetTicket(TicketId)        404 unknown_ticket: reject the login
//   GET  /v1/events                OnStateChanged, OnDraining, OnStopping
//
// Every call takes an optional OnDone delegate (Blueprint or C++) with an FEdgegapSidecarResponse.
// Errors ({"error": {"code", "message"}}) are logged to LogEdgegapSidecar and passed to OnDone,
// never fatal: a sidecar hiccup must not take a live match down. A game already integrated with
// Agones (UAgonesSubsystem) needs none of this: run the sidecar with SIDECAR_AGONES=true.
//
// Usage, from your GameMode on the dedicated server:
//   if (auto* Sidecar = GetGameInstance()->GetSubsystem<UEdgegapSidecarSubsystem>()) // null off-server
//   {
//       Sidecar->OnDraining.AddDynamic(this, &AMyGameMode::SayGoodbye);
//       Sidecar->ReportReady({});                              // once the game port is open
//       Sidecar->PlayerConnected(PlayerId, TicketId, {});      // from PostLogin
//       Sidecar->MatchEnd(TEXT("{\"winner\":\"p1\"}"), 10.f, {}); // when the match is decided
//   ({} is "no callback"; pass an FEdgegapSidecarDone bound with BindUFunction for the answer.)
//   }

#pragma once

#include "CoreMinimal.h"
#include "Interfaces/IHttpRequest.h"
#include "Subsystems/GameInstanceSubsystem.h"
#include "TimerManager.h"
#include "EdgegapSidecarSubsystem.generated.h"

/** The answer to one call. Code 0: the sidecar was unreachable. */
USTRUCT(BlueprintType)
struct EDGEGAPSIDECAR_API FEdgegapSidecarResponse
{
	GENERATED_BODY()

	UPROPERTY(BlueprintReadOnly, Category = "Edgegap Sidecar")
	bool bOk = false;

	UPROPERTY(BlueprintReadOnly, Category = "Edgegap Sidecar")
	int32 Code = 0;

	/** The JSON body as text. */
	UPROPERTY(BlueprintReadOnly, Category = "Edgegap Sidecar")
	FString Body;

	/** From the {"error": {"code", "message"}} body of an HTTP error. */
	UPROPERTY(BlueprintReadOnly, Category = "Edgegap Sidecar")
	FString ErrorCode;

	UPROPERTY(BlueprintReadOnly, Category = "Edgegap Sidecar")
	FString ErrorMessage;
};

DECLARE_DYNAMIC_DELEGATE_OneParam(FEdgegapSidecarDone, const FEdgegapSidecarResponse&, Response);
/** State (lower-case, as on the wire) and the whole status JSON. */
DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FEdgegapSidecarStateChanged, const FString&, State, const FString&, StatusJson);
/** Stop reason (match_ended, shutdown_requested, unhealthy, ...) and the whole status JSON. */
DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FEdgegapSidecarStop, const FString&, StopReason, const FString&, StatusJson);

UCLASS()
class EDGEGAPSIDECAR_API UEdgegapSidecarSubsystem : public UGameInstanceSubsystem
{
	GENERATED_BODY()

public:
	/** Dedicated servers only (or forced): clients and editors get no subsystem (GetSubsystem is null). */
	virtual bool ShouldCreateSubsystem(UObject* Outer) const override;
	virtual void Initialize(FSubsystemCollectionBase& Collection) override;
	virtual void Deinitialize() override;

	/** The server accepts players; retried while the sidecar starts (~10 s), then heartbeats. */
	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void ReportReady(const FEdgegapSidecarDone& OnDone);

	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void Health(const FEdgegapSidecarDone& OnDone);

	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void Activity(const FEdgegapSidecarDone& OnDone);

	/** A player joined; TicketId (may be empty) is the matchmaker ticket it holds. */
	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void PlayerConnected(const FString& PlayerId, const FString& TicketId, const FEdgegapSidecarDone& OnDone);

	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void PlayerDisconnected(const FString& PlayerId, const FEdgegapSidecarDone& OnDone);

	/** Replace the whole roster with these ids. */
	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void SetPlayers(const TArray<FString>& PlayerIds, const FEdgegapSidecarDone& OnDone);

	/** Replace the roster with this many anonymous players. */
	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void SetPlayerCount(int32 Count, const FEdgegapSidecarDone& OnDone);

	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void GetPlayers(const FEdgegapSidecarDone& OnDone);

	/** Suspend the idle stops for this long (0 clears the hold). */
	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void Hold(float Seconds, const FEdgegapSidecarDone& OnDone);

	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void MatchStart(const FString& MatchId, const FEdgegapSidecarDone& OnDone);

	/** Report the result (any JSON text up to 16 KiB); GraceSeconds < 0 keeps the sidecar's default. */
	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void MatchEnd(const FString& ResultJson, float GraceSeconds, const FEdgegapSidecarDone& OnDone);

	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void Shutdown(const FString& Reason, float GraceSeconds, const FString& LogStorage, const FEdgegapSidecarDone& OnDone);

	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void GetStatus(const FEdgegapSidecarDone& OnDone);

	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void GetDeployment(const FEdgegapSidecarDone& OnDone);

	/** The matchmaker's match: expected and arrived tickets, teams, quorum. */
	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void GetMatch(const FEdgegapSidecarDone& OnDone);

	/** Check a joiner's ticket (e.g. in PreLogin): 200 with the ticket, or 404 unknown_ticket. */
	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar", meta = (AutoCreateRefTerm = "OnDone"))
	void GetTicket(const FString& TicketId, const FEdgegapSidecarDone& OnDone);

	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar")
	void StartHealthLoop();

	UFUNCTION(BlueprintCallable, Category = "Edgegap Sidecar")
	void StopHealthLoop();

	/** Every state change the event stream reports. */
	UPROPERTY(BlueprintAssignable, Category = "Edgegap Sidecar")
	FEdgegapSidecarStateChanged OnStateChanged;

	/** Once, when a stop is decided (also when it skips the drain): tell the players goodbye. */
	UPROPERTY(BlueprintAssignable, Category = "Edgegap Sidecar")
	FEdgegapSidecarStop OnDraining;

	/** Once, when the self-stop is under way: the container ends soon; run until SIGTERM. */
	UPROPERTY(BlueprintAssignable, Category = "Edgegap Sidecar")
	FEdgegapSidecarStop OnStopping;

	/** The last state the event stream reported (empty before the first event). */
	UFUNCTION(BlueprintPure, Category = "Edgegap Sidecar")
	FString GetState() const { return State; }

	/** Any route; Body is JSON text or empty. */
	void Send(const FString& Verb, const FString& Path, const FString& Body, int32 Attempts, FEdgegapSidecarDone OnDone);

private:
	friend class FEdgegapSidecarEventArchive;

	void OpenEventStream();
	void OnEventBytes(const TArray<uint8>& Bytes);
	void OnEvent(const FString& Name, const FString& Data);
	void ReconnectEventsLater();

	FString BaseUrl;
	FString Token; // from SIDECAR_API_TOKEN, never from a config file
	float HeartbeatIntervalSeconds = 5.f;
	float RequestTimeoutSeconds = 2.f;
	bool bListenToEvents = true;
	FTimerHandle HeartbeatTimer;
	FTimerHandle EventsRetryTimer;
	TSharedPtr<IHttpRequest, ESPMode::ThreadSafe> EventsRequest;
	TArray<uint8> EventsBuffer;
	FString EventName;
	FString EventData;
	FString State;
	bool bDrainingBroadcast = false;
	bool bStoppingBroadcast = false;
	bool bShuttingDown = false;
};
