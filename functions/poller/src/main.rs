use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use switchyard_common::runtime;
use switchyard_poller::{handle, Deps};

/// Invoked by EventBridge Scheduler every minute with `{}`; `{"source": "NAME",
/// "force": true}` reads one source now (an operator's manual run). Answers each
/// source's report; a run that stopped early is in its `error` and the `PollFailed`
/// metric (alarmed), and the next minute's run goes on from the stored cursor.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = runtime::cold_start(|sdk| async move { Deps::from_env(&sdk).await }).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let deps = &deps;
        async move {
            let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
            let only = event.payload.get("source").and_then(Value::as_str);
            let force = event.payload.get("force").and_then(Value::as_bool).unwrap_or(false);
            let reports = handle(deps, only, force, deadline_ms).await;
            Ok::<_, Error>(serde_json::to_value(reports)?)
        }
    }))
    .await
}
