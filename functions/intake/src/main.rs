use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use switchyard_common::runtime;
use switchyard_intake::{handle, warm_up, Deps};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = runtime::cold_start(|sdk| async move { Deps::from_env(&sdk).await }).await?;
    warm_up(&deps).await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
        let deps = &deps;
        async move { Ok::<_, Error>(handle(deps, event.payload, deadline_ms).await) }
    }))
    .await
}
