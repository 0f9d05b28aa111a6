use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use switchyard_common::config::Config;
use switchyard_common::names::Stage;
use switchyard_common::runtime::{self, env};
use switchyard_rotator::{AwsSecretVersions, RotationEvent, Rotator};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let sdk = runtime::aws_config().await;
    // The flow file says what each secret is for, so testSecret can check the new value.
    let setup = || -> Result<(Stage, Config), String> {
        let stage = Stage::new(&env("SWITCHYARD_STAGE")?).map_err(|e| e.to_string())?;
        Ok((stage, Config::from_env().map_err(|e| format!("flow file: {e}"))?))
    };
    let (stage, config) = setup().map_err(|e| {
        tracing::error!(error = %e, "cannot start");
        e
    })?;
    let versions = AwsSecretVersions::new(aws_sdk_secretsmanager::Client::new(&sdk));
    let rotator = Rotator::new(versions, stage, Arc::new(config));
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
