// See EdgegapSidecarSubsystem.h for what this does and how to use it.

#include "EdgegapSidecarSubsystem.h"

#include "Dom/JsonObject.h"
#include "Engine/GameInstance.h"
#include "HAL/PlatformMisc.h"
#include "HttpModule.h"
#include "Interfaces/IHttpRequest.h"
#include "Interfaces/IHttpResponse.h"
#include "Serialization/JsonSerializer.h"
#include "Serialization/JsonWriter.h"

void UEdgegapSidecarSubsystem::Initialize(FSubsystemCollectionBase& Collection)
{
	Super::Initialize(Collection);
	// The sidecar hands the game these in run mode, whatever port it ended up on.
	const FString Url = FPlatformMisc::GetEnvironmentVariable(TEXT("SIDECAR_URL"));
	const FString Port = FPlatformMisc::GetEnvironmentVariable(TEXT("SIDECAR_PORT"));
	BaseUrl = !Url.IsEmpty() ? Url : FString::Printf(TEXT("http://127.0.0.1:%s"), Port.IsEmpty() ? TEXT("8787") : *Port);
	Token = FPlatformMisc::GetEnvironmentVariable(TEXT("SIDECAR_API_TOKEN"));
}

void UEdgegapSidecarSubsystem::Deinitialize()
{
	if (UGameInstance* GameInstance = GetGameInstance())
	{
		GameInstance->GetTimerManager().ClearTimer(HeartbeatTimer);
	}
	Super::Deinitialize();
}

void UEdgegapSidecarSubsystem::ReportReady()
{
	Send(TEXT("POST"), TEXT("/v1/ready"), FString(), StartupAttempts,
		FEdgegapSidecarDone::CreateWeakLambda(this, [this](bool bOk)
		{
			if (bOk && !HeartbeatTimer.IsValid())
			{
				GetGameInstance()->GetTimerManager().SetTimer(
					HeartbeatTimer, this, &UEdgegapSidecarSubsystem::Heartbeat, HeartbeatIntervalSeconds, true);
			}
		}));
}

void UEdgegapSidecarSubsystem::Heartbeat()
{
	Send(TEXT("POST"), TEXT("/v1/health"), FString(), 1);
}

void UEdgegapSidecarSubsystem::PlayerConnected(const FString& PlayerId)
{
	Send(TEXT("POST"), TEXT("/v1/players/connect"), PlayerBody(PlayerId), 1);
}

void UEdgegapSidecarSubsystem::PlayerDisconnected(const FString& PlayerId)
{
	Send(TEXT("POST"), TEXT("/v1/players/disconnect"), PlayerBody(PlayerId), 1);
}

void UEdgegapSidecarSubsystem::MatchEnd(const FString& ResultJson, float GraceSeconds)
{
	// The result is embedded as JSON, not as a string, so it is written by hand; an empty
	// result is sent as null.
	FString Body = FString::Printf(TEXT("{\"result\":%s"), ResultJson.IsEmpty() ? TEXT("null") : *ResultJson);
	if (GraceSeconds >= 0.f)
	{
		Body += FString::Printf(TEXT(",\"grace_seconds\":%.3f"), GraceSeconds);
	}
	Body += TEXT("}");
	Send(TEXT("POST"), TEXT("/v1/match/end"), Body, 3);
}

FString UEdgegapSidecarSubsystem::PlayerBody(const FString& PlayerId)
{
	// Through the JSON writer, so that quotes or backslashes in an id are escaped.
	TSharedRef<FJsonObject> Object = MakeShared<FJsonObject>();
	Object->SetStringField(TEXT("player_id"), PlayerId);
	FString Body;
	TSharedRef<TJsonWriter<>> Writer = TJsonWriterFactory<>::Create(&Body);
	FJsonSerializer::Serialize(Object, Writer);
	return Body;
}

// AttemptsLeft > 1 retries connection errors only (the game may come up before its sidecar);
// an HTTP error is an answer and is never retried.
void UEdgegapSidecarSubsystem::Send(const FString& Verb, const FString& Path, const FString& Body,
	int32 AttemptsLeft, FEdgegapSidecarDone Done)
{
	TSharedRef<IHttpRequest, ESPMode::ThreadSafe> Request = FHttpModule::Get().CreateRequest();
	Request->SetURL(BaseUrl + Path);
	Request->SetVerb(Verb);
	Request->SetTimeout(RequestTimeoutSeconds);
	if (!Body.IsEmpty())
	{
		Request->SetHeader(TEXT("Content-Type"), TEXT("application/json"));
		Request->SetContentAsString(Body);
	}
	if (!Token.IsEmpty())
	{
		Request->SetHeader(TEXT("Authorization"), TEXT("Bearer ") + Token);
	}
	TWeakObjectPtr<UEdgegapSidecarSubsystem> WeakThis(this);
	Request->OnProcessRequestComplete().BindLambda(
		[WeakThis, Verb, Path, Body, AttemptsLeft, Done](FHttpRequestPtr, FHttpResponsePtr Response, bool bConnected)
		{
			UEdgegapSidecarSubsystem* Self = WeakThis.Get();
			if (Self == nullptr)
			{
				return; // the game instance is shutting down
			}
			if (bConnected && Response.IsValid())
			{
				const int32 Code = Response->GetResponseCode();
				const bool bOk = EHttpResponseCodes::IsOk(Code);
				if (!bOk)
				{
					UE_LOG(LogTemp, Warning, TEXT("[sidecar] %s %s -> %d %s"), *Verb, *Path, Code, *Response->GetContentAsString());
				}
				Done.ExecuteIfBound(bOk);
				return;
			}
			UE_LOG(LogTemp, Warning, TEXT("[sidecar] %s %s failed: no connection (%d attempts left)"), *Verb, *Path, AttemptsLeft - 1);
			if (AttemptsLeft > 1)
			{
				FTimerHandle Retry;
				Self->GetGameInstance()->GetTimerManager().SetTimer(Retry,
					FTimerDelegate::CreateWeakLambda(Self, [Self, Verb, Path, Body, AttemptsLeft, Done]()
					{
						Self->Send(Verb, Path, Body, AttemptsLeft - 1, Done);
					}),
					1.f, false);
				return;
			}
			Done.ExecuteIfBound(false);
		});
	Request->ProcessRequest();
}
