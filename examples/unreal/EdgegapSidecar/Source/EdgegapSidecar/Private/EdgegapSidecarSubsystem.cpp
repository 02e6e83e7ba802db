#include "EdgegapSidecarSubsystem.h"

#include "Async/Async.h"
#include "Dom/JsonObject.h"
#include "EdgegapSidecarLog.h"
#include "EdgegapSidecarSettings.h"
#include "Engine/GameInstance.h"
#include "GenericPlatform/GenericPlatformHttp.h"
#include "HAL/PlatformMisc.h"
#include "HttpModule.h"
#include "Interfaces/IHttpResponse.h"
#include "Serialization/Archive.h"
#include "Serialization/JsonReader.h"
#include "Serialization/JsonSerializer.h"
#include "Serialization/JsonWriter.h"

namespace
{
	bool EnvFlag(const TCHAR* Name)
	{
		const FString Value = FPlatformMisc::GetEnvironmentVariable(Name);
		return Value == TEXT("1") || Value.Equals(TEXT("true"), ESearchCase::IgnoreCase);
	}

	FString UrlFromEnvironment()
	{
		FString Host = FPlatformMisc::GetEnvironmentVariable(TEXT("SIDECAR_HOST"));
		const FString Port = FPlatformMisc::GetEnvironmentVariable(TEXT("SIDECAR_PORT"));
		// SIDECAR_HOST is the sidecar's bind address; a wildcard bind is reached over loopback.
		if (Host.IsEmpty() || Host == TEXT("0.0.0.0")) Host = TEXT("127.0.0.1");
		if (Host == TEXT("::")) Host = TEXT("::1");
		if (Host.Contains(TEXT(":")) && !Host.StartsWith(TEXT("["))) Host = TEXT("[") + Host + TEXT("]");
		return FString::Printf(TEXT("http://%s:%s"), *Host, Port.IsEmpty() ? TEXT("8787") : *Port);
	}

	FString JsonBody(const TSharedRef<FJsonObject>& Object)
	{
		FString Body;
		TSharedRef<TJsonWriter<>> Writer = TJsonWriterFactory<>::Create(&Body);
		FJsonSerializer::Serialize(Object, Writer);
		return Body;
	}

	FString Number(float Value)
	{
		return FString::SanitizeFloat(Value);
	}
}

// Receives GET /v1/events as it arrives (on the HTTP thread) and hands the bytes to the game thread.
class FEdgegapSidecarEventArchive : public FArchive
{
public:
	explicit FEdgegapSidecarEventArchive(TWeakObjectPtr<UEdgegapSidecarSubsystem> InOwner) : Owner(InOwner)
	{
		SetIsSaving(true);
	}

	virtual void Serialize(void* Data, int64 Num) override
	{
		if (Num <= 0) return;
		TArray<uint8> Bytes(static_cast<const uint8*>(Data), static_cast<int32>(Num));
		TWeakObjectPtr<UEdgegapSidecarSubsystem> WeakOwner = Owner;
		AsyncTask(ENamedThreads::GameThread, [WeakOwner, Bytes = MoveTemp(Bytes)]()
		{
			if (UEdgegapSidecarSubsystem* Self = WeakOwner.Get())
			{
				Self->OnEventBytes(Bytes);
			}
		});
	}

private:
	TWeakObjectPtr<UEdgegapSidecarSubsystem> Owner;
};

bool UEdgegapSidecarSubsystem::ShouldCreateSubsystem(UObject* Outer) const
{
	if (!Super::ShouldCreateSubsystem(Outer)) return false;
	if (GetDefault<UEdgegapSidecarSettings>()->bForceEnable || EnvFlag(TEXT("EDGEGAP_SIDECAR_ENABLE"))) return true;
	// Dedicated servers only: a client or the editor has no sidecar to talk to.
#if UE_SERVER
	return true;
#else
	return IsRunningDedicatedServer();
#endif
}

void UEdgegapSidecarSubsystem::Initialize(FSubsystemCollectionBase& Collection)
{
	Super::Initialize(Collection);
	const UEdgegapSidecarSettings* Settings = GetDefault<UEdgegapSidecarSettings>();
	BaseUrl = Settings->BaseUrl.IsEmpty() ? UrlFromEnvironment() : Settings->BaseUrl;
	BaseUrl.RemoveFromEnd(TEXT("/"));
	HeartbeatIntervalSeconds = FMath::Max(0.5f, Settings->HeartbeatIntervalSeconds);
	RequestTimeoutSeconds = FMath::Max(0.5f, Settings->RequestTimeoutSeconds);
	bListenToEvents = Settings->bListenToEvents;
	Token = FPlatformMisc::GetEnvironmentVariable(TEXT("SIDECAR_API_TOKEN"));
	UE_LOG(LogEdgegapSidecar, Log, TEXT("sidecar at %s"), *BaseUrl);
	if (bListenToEvents) OpenEventStream();
}

void UEdgegapSidecarSubsystem::Deinitialize()
{
	bShuttingDown = true;
	if (UGameInstance* GameInstance = GetGameInstance())
	{
		GameInstance->GetTimerManager().ClearTimer(HeartbeatTimer);
		GameInstance->GetTimerManager().ClearTimer(EventsRetryTimer);
	}
	if (EventsRequest.IsValid())
	{
		EventsRequest->OnProcessRequestComplete().Unbind();
		EventsRequest->CancelRequest();
		EventsRequest.Reset();
	}
	Super::Deinitialize();
}

// ---- the routes ------------------------------------------------------------------------------

void UEdgegapSidecarSubsystem::ReportReady(const FEdgegapSidecarDone& OnDone)
{
	// Send() starts the heartbeat on success, whether or not the caller bound a delegate.
	Send(TEXT("POST"), TEXT("/v1/ready"), FString(), 10, OnDone);
}

void UEdgegapSidecarSubsystem::Health(const FEdgegapSidecarDone& OnDone)
{
	Send(TEXT("POST"), TEXT("/v1/health"), FString(), 1, OnDone);
}

void UEdgegapSidecarSubsystem::Activity(const FEdgegapSidecarDone& OnDone)
{
	Send(TEXT("POST"), TEXT("/v1/activity"), FString(), 1, OnDone);
}

void UEdgegapSidecarSubsystem::PlayerConnected(const FString& PlayerId, const FString& TicketId, const FEdgegapSidecarDone& OnDone)
{
	TSharedRef<FJsonObject> Object = MakeShared<FJsonObject>();
	Object->SetStringField(TEXT("player_id"), PlayerId);
	if (!TicketId.IsEmpty()) Object->SetStringField(TEXT("ticket_id"), TicketId);
	Send(TEXT("POST"), TEXT("/v1/players/connect"), JsonBody(Object), 1, OnDone);
}

void UEdgegapSidecarSubsystem::PlayerDisconnected(const FString& PlayerId, const FEdgegapSidecarDone& OnDone)
{
	TSharedRef<FJsonObject> Object = MakeShared<FJsonObject>();
	Object->SetStringField(TEXT("player_id"), PlayerId);
	Send(TEXT("POST"), TEXT("/v1/players/disconnect"), JsonBody(Object), 1, OnDone);
}

void UEdgegapSidecarSubsystem::SetPlayers(const TArray<FString>& PlayerIds, const FEdgegapSidecarDone& OnDone)
{
	TArray<TSharedPtr<FJsonValue>> Ids;
	for (const FString& Id : PlayerIds) Ids.Add(MakeShared<FJsonValueString>(Id));
	TSharedRef<FJsonObject> Object = MakeShared<FJsonObject>();
	Object->SetArrayField(TEXT("player_ids"), Ids);
	Send(TEXT("PUT"), TEXT("/v1/players"), JsonBody(Object), 1, OnDone);
}

void UEdgegapSidecarSubsystem::SetPlayerCount(int32 Count, const FEdgegapSidecarDone& OnDone)
{
	Send(TEXT("PUT"), TEXT("/v1/players"), FString::Printf(TEXT("{\"count\":%d}"), Count), 1, OnDone);
}

void UEdgegapSidecarSubsystem::GetPlayers(const FEdgegapSidecarDone& OnDone)
{
	Send(TEXT("GET"), TEXT("/v1/players"), FString(), 1, OnDone);
}

void UEdgegapSidecarSubsystem::Hold(float Seconds, const FEdgegapSidecarDone& OnDone)
{
	Send(TEXT("POST"), TEXT("/v1/hold"), TEXT("{\"seconds\":") + Number(Seconds) + TEXT("}"), 1, OnDone);
}

void UEdgegapSidecarSubsystem::MatchStart(const FString& MatchId, const FEdgegapSidecarDone& OnDone)
{
	TSharedRef<FJsonObject> Object = MakeShared<FJsonObject>();
	if (!MatchId.IsEmpty()) Object->SetStringField(TEXT("match_id"), MatchId);
	Send(TEXT("POST"), TEXT("/v1/match/start"), JsonBody(Object), 1, OnDone);
}

void UEdgegapSidecarSubsystem::MatchEnd(const FString& ResultJson, float GraceSeconds, const FEdgegapSidecarDone& OnDone)
{
	// The result is JSON text from the game: embedded as is, not re-encoded as a string.
	FString Body = FString::Printf(TEXT("{\"result\":%s"), ResultJson.IsEmpty() ? TEXT("null") : *ResultJson);
	if (GraceSeconds >= 0.f) Body += TEXT(",\"grace_seconds\":") + Number(GraceSeconds);
	Send(TEXT("POST"), TEXT("/v1/match/end"), Body + TEXT("}"), 1, OnDone);
}

void UEdgegapSidecarSubsystem::Shutdown(const FString& Reason, float GraceSeconds, const FString& LogStorage, const FEdgegapSidecarDone& OnDone)
{
	TSharedRef<FJsonObject> Object = MakeShared<FJsonObject>();
	if (!Reason.IsEmpty()) Object->SetStringField(TEXT("reason"), Reason);
	if (GraceSeconds >= 0.f) Object->SetNumberField(TEXT("grace_seconds"), GraceSeconds);
	if (!LogStorage.IsEmpty()) Object->SetStringField(TEXT("log_storage"), LogStorage);
	Send(TEXT("POST"), TEXT("/v1/shutdown"), JsonBody(Object), 1, OnDone);
}

void UEdgegapSidecarSubsystem::GetStatus(const FEdgegapSidecarDone& OnDone)
{
	Send(TEXT("GET"), TEXT("/v1/status"), FString(), 1, OnDone);
}

void UEdgegapSidecarSubsystem::GetDeployment(const FEdgegapSidecarDone& OnDone)
{
	Send(TEXT("GET"), TEXT("/v1/deployment"), FString(), 1, OnDone);
}

void UEdgegapSidecarSubsystem::GetMatch(const FEdgegapSidecarDone& OnDone)
{
	Send(TEXT("GET"), TEXT("/v1/match"), FString(), 1, OnDone);
}

void UEdgegapSidecarSubsystem::GetTicket(const FString& TicketId, const FEdgegapSidecarDone& OnDone)
{
	Send(TEXT("GET"), TEXT("/v1/match/tickets/") + FGenericPlatformHttp::UrlEncode(TicketId), FString(), 1, OnDone);
}

// ---- the heartbeat ---------------------------------------------------------------------------

void UEdgegapSidecarSubsystem::StartHealthLoop()
{
	FTimerManager& Timers = GetGameInstance()->GetTimerManager();
	if (Timers.IsTimerActive(HeartbeatTimer)) return;
	// The game instance's timer manager outlives every world: map travel does not stop it.
	Send(TEXT("POST"), TEXT("/v1/health"), FString(), 1, FEdgegapSidecarDone());
	Timers.SetTimer(HeartbeatTimer, FTimerDelegate::CreateWeakLambda(this, [this]()
	{
		Send(TEXT("POST"), TEXT("/v1/health"), FString(), 1, FEdgegapSidecarDone());
	}), HeartbeatIntervalSeconds, true);
}

void UEdgegapSidecarSubsystem::StopHealthLoop()
{
	GetGameInstance()->GetTimerManager().ClearTimer(HeartbeatTimer);
}

// ---- plumbing --------------------------------------------------------------------------------

// Attempts > 1 retries connection errors only (the game may come up before its sidecar); an
// HTTP error is an answer and is never retried.
void UEdgegapSidecarSubsystem::Send(const FString& Verb, const FString& Path, const FString& Body, int32 Attempts, FEdgegapSidecarDone OnDone)
{
	TSharedRef<IHttpRequest, ESPMode::ThreadSafe> Request = FHttpModule::Get().CreateRequest();
	Request->SetURL(BaseUrl + Path);
	Request->SetVerb(Verb);
	Request->SetTimeout(RequestTimeoutSeconds);
	Request->SetHeader(TEXT("Accept"), TEXT("application/json"));
	if (!Body.IsEmpty())
	{
		Request->SetHeader(TEXT("Content-Type"), TEXT("application/json"));
		Request->SetContentAsString(Body);
	}
	if (!Token.IsEmpty()) Request->SetHeader(TEXT("Authorization"), TEXT("Bearer ") + Token);

	TWeakObjectPtr<UEdgegapSidecarSubsystem> WeakThis(this);
	Request->OnProcessRequestComplete().BindLambda(
		[WeakThis, Verb, Path, Body, Attempts, OnDone](FHttpRequestPtr, FHttpResponsePtr Response, bool bConnected)
		{
			UEdgegapSidecarSubsystem* Self = WeakThis.Get();
			if (Self == nullptr || Self->bShuttingDown) return;
			FEdgegapSidecarResponse Answer;
			if (bConnected && Response.IsValid())
			{
				Answer.Code = Response->GetResponseCode();
				Answer.bOk = EHttpResponseCodes::IsOk(Answer.Code);
				Answer.Body = Response->GetContentAsString();
				if (!Answer.bOk)
				{
					TSharedPtr<FJsonObject> Parsed;
					const TSharedRef<TJsonReader<>> Reader = TJsonReaderFactory<>::Create(Answer.Body);
					const TSharedPtr<FJsonObject>* Error = nullptr;
					if (FJsonSerializer::Deserialize(Reader, Parsed) && Parsed.IsValid() && Parsed->TryGetObjectField(TEXT("error"), Error))
					{
						Answer.ErrorCode = (*Error)->GetStringField(TEXT("code"));
						Answer.ErrorMessage = (*Error)->GetStringField(TEXT("message"));
					}
					UE_LOG(LogEdgegapSidecar, Warning, TEXT("%s %s -> %d %s: %s"), *Verb, *Path, Answer.Code, *Answer.ErrorCode, *Answer.ErrorMessage);
				}
				else if (Path == TEXT("/v1/ready"))
				{
					Self->StartHealthLoop();
				}
				OnDone.ExecuteIfBound(Answer);
				return;
			}
			if (Attempts > 1)
			{
				FTimerHandle Retry;
				Self->GetGameInstance()->GetTimerManager().SetTimer(Retry,
					FTimerDelegate::CreateWeakLambda(Self, [Self, Verb, Path, Body, Attempts, OnDone]()
					{
						Self->Send(Verb, Path, Body, Attempts - 1, OnDone);
					}),
					1.f, false);
				return;
			}
			Answer.ErrorMessage = TEXT("sidecar unreachable");
			UE_LOG(LogEdgegapSidecar, Warning, TEXT("%s %s failed: sidecar unreachable at %s"), *Verb, *Path, *Self->BaseUrl);
			OnDone.ExecuteIfBound(Answer);
		});
	Request->ProcessRequest();
}

// ---- events (GET /v1/events, Server-Sent Events) ---------------------------------------------

void UEdgegapSidecarSubsystem::OpenEventStream()
{
	if (bShuttingDown) return;
	EventsBuffer.Reset();
	EventName.Reset();
	EventData.Reset();
	TSharedRef<IHttpRequest, ESPMode::ThreadSafe> Request = FHttpModule::Get().CreateRequest();
	Request->SetURL(BaseUrl + TEXT("/v1/events"));
	Request->SetVerb(TEXT("GET"));
	Request->SetHeader(TEXT("Accept"), TEXT("text/event-stream"));
	if (!Token.IsEmpty()) Request->SetHeader(TEXT("Authorization"), TEXT("Bearer ") + Token);
	// A stream: no overall timeout to speak of; it is reopened whenever it ends.
	Request->SetTimeout(24.f * 3600.f);
	// The body arrives in pieces as the sidecar writes them (UE 5.3+).
	Request->SetResponseBodyReceiveStream(MakeShared<FEdgegapSidecarEventArchive>(TWeakObjectPtr<UEdgegapSidecarSubsystem>(this)));
	TWeakObjectPtr<UEdgegapSidecarSubsystem> WeakThis(this);
	Request->OnProcessRequestComplete().BindLambda([WeakThis](FHttpRequestPtr, FHttpResponsePtr, bool)
	{
		if (UEdgegapSidecarSubsystem* Self = WeakThis.Get())
		{
			Self->EventsRequest.Reset();
			Self->ReconnectEventsLater();
		}
	});
	EventsRequest = Request;
	Request->ProcessRequest();
}

void UEdgegapSidecarSubsystem::ReconnectEventsLater()
{
	if (bShuttingDown) return;
	GetGameInstance()->GetTimerManager().SetTimer(EventsRetryTimer,
		FTimerDelegate::CreateUObject(this, &UEdgegapSidecarSubsystem::OpenEventStream), 2.f, false);
}

void UEdgegapSidecarSubsystem::OnEventBytes(const TArray<uint8>& Bytes)
{
	// Split on bytes, decode whole lines: a UTF-8 character may straddle two chunks.
	EventsBuffer.Append(Bytes);
	int32 Newline;
	while (EventsBuffer.Find(static_cast<uint8>('\n'), Newline))
	{
		int32 Length = Newline;
		if (Length > 0 && EventsBuffer[Length - 1] == '\r') --Length;
		const FUTF8ToTCHAR Converted(reinterpret_cast<const ANSICHAR*>(EventsBuffer.GetData()), Length);
		const FString Line(Converted.Length(), Converted.Get());
		EventsBuffer.RemoveAt(0, Newline + 1);

		if (Line.IsEmpty())
		{
			if (!EventData.IsEmpty()) OnEvent(EventName.IsEmpty() ? TEXT("message") : EventName, EventData);
			EventName.Reset();
			EventData.Reset();
		}
		else if (!Line.StartsWith(TEXT(":"))) // ":" lines are keepalive comments
		{
			FString Field = Line, Value;
			if (Line.Split(TEXT(":"), &Field, &Value)) Value.RemoveFromStart(TEXT(" "));
			if (Field == TEXT("event")) EventName = Value;
			else if (Field == TEXT("data")) EventData += (EventData.IsEmpty() ? TEXT("") : TEXT("\n")) + Value;
		}
	}
}

void UEdgegapSidecarSubsystem::OnEvent(const FString& Name, const FString& Data)
{
	if (Name != TEXT("state")) return;
	TSharedPtr<FJsonObject> Status;
	const TSharedRef<TJsonReader<>> Reader = TJsonReaderFactory<>::Create(Data);
	if (!FJsonSerializer::Deserialize(Reader, Status) || !Status.IsValid()) return;
	const FString NewState = Status->GetStringField(TEXT("state"));
	FString StopReason;
	Status->TryGetStringField(TEXT("stop_reason"), StopReason);
	if (NewState != State)
	{
		State = NewState;
		UE_LOG(LogEdgegapSidecar, Log, TEXT("state %s"), *NewState);
		OnStateChanged.Broadcast(NewState, Data);
	}
	const bool bStopUnderWay = NewState == TEXT("stopping") || NewState == TEXT("stopped")
		|| NewState == TEXT("failed") || NewState == TEXT("terminating");
	if ((NewState == TEXT("draining") || bStopUnderWay) && !bDrainingBroadcast)
	{
		bDrainingBroadcast = true;
		OnDraining.Broadcast(StopReason, Data);
	}
	if (bStopUnderWay && !bStoppingBroadcast)
	{
		bStoppingBroadcast = true;
		OnStopping.Broadcast(StopReason, Data);
	}
}
