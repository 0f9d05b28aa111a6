use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use switchyard_common::runtime;
use switchyard_intake::{handle, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let sdk = runtime::aws_config().await;
    // A bad flow file or missing setting stops the cold start with its reason.
    let deps = Deps::from_env(&sdk).await.map_err(|e| {
        tracing::error!(error = %e, "cannot start");
        e
    })?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
        let deps = &deps;
        async move { Ok::<_, Error>(handle(deps, event.payload, deadline_ms).await) }
    }))
    .await
}
