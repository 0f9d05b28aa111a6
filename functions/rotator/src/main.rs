use lambda_runtime::{service_fn, Error, LambdaEvent};
use switchyard_common::runtime;
use switchyard_rotator::{RotationEvent, Rotator};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let rotator = runtime::cold_start(|sdk| async move { Rotator::from_env(&sdk) }).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<RotationEvent>| {
        let rotator = &rotator;
        async move {
            rotator.handle(&event.payload).await.map(drop).map_err(|e| {
                tracing::error!(error = %e, step = %event.payload.step, "rotation step failed");
                Error::from(e)
            })
        }
    }))
    .await
}
