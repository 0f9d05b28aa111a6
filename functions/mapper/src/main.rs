use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use switchyard_common::runtime;
use switchyard_mapper::{handle, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let sdk = runtime::aws_config().await;
    let deps = Deps::from_env(&sdk).await.map_err(|e| {
        tracing::error!(error = %e, "cannot start");
        e
    })?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let deps = &deps;
        async move { Ok::<_, Error>(handle(deps, event.payload).await) }
    }))
    .await
}
