use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use switchyard_common::archive::{Archive, S3Archive};
use switchyard_common::config::Config;
use switchyard_common::ledger::DynamoLedger;
use switchyard_common::names::Stage;
use switchyard_common::runtime::{self, env};
use switchyard_reconciler::{handle, Deps};

/// `SWITCHYARD_STAGE`, `SWITCHYARD_LEDGER_TABLE`, `SWITCHYARD_ARCHIVE_BUCKET` (the
/// reconciler re-maps archived envelopes: without an archive there is nothing to read
/// back; without one each run says so and does nothing) and the flow file.
async fn deps(sdk: aws_config::SdkConfig) -> Result<Option<Deps>, String> {
    let config = Config::from_env().map_err(|e| format!("flow file: {e}"))?;
    config.check_programs(switchyard_common::config::Programs::All).map_err(|e| format!("flow file: {e}"))?;
    let config = Arc::new(config);
    let table = env("SWITCHYARD_LEDGER_TABLE")?;
    let stage = Stage::new(&env("SWITCHYARD_STAGE")?).map_err(|e| e.to_string())?;
    let Some(archive) = S3Archive::from_env(&sdk)? else { return Ok(None) };
    Ok(Some(Deps {
        ledger: Arc::new(DynamoLedger::new(aws_sdk_dynamodb::Client::new(&sdk), &table)),
        archive: Arc::new(archive) as Arc<dyn Archive>,
        reads: switchyard_dispatcher::Deps::for_reads(&sdk, config.clone(), stage, &table)?,
        config,
    }))
}

/// Invoked by EventBridge Scheduler every hour; answers each flow's report (or why
/// it could not be made, which is also an error of the invocation: alarmed).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = runtime::cold_start(deps).await?;
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| {
        let deps = &deps;
        async move {
            let Some(deps) = deps else {
                tracing::warn!("the stage keeps no event archive (ArchiveEvents=false): nothing to reconcile");
                return Ok(Value::Array(Vec::new()));
            };
            let results = handle(deps).await;
            let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
            if !failed.is_empty() {
                return Err(Error::from(format!("reconciliation failed: {failed:?}")));
            }
            Ok::<_, Error>(serde_json::to_value(results.into_iter().flatten().collect::<Vec<_>>())?)
        }
    }))
    .await
}
