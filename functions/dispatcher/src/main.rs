use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use switchyard_common::runtime;
use switchyard_dispatcher::{handle, Deps};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = runtime::cold_start(|sdk| async move { Deps::from_env(&sdk).await }).await?;
    switchyard_dispatcher::warm_up(&deps).await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
        let deps = &deps;
        async move { Ok::<_, Error>(handle(deps, event.payload, deadline_ms).await) }
    }))
    .await
}
