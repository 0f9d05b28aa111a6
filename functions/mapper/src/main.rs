use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use switchyard_common::runtime;
use switchyard_mapper::{handle, Deps};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let deps = runtime::cold_start(|sdk| async move { Deps::from_env(&sdk).await }).await?;
    // The connection of the first batch's send is open before it (the archive's is not:
    // the role may only put objects under events/).
    if let Err(e) = deps.queue.warm_up(&deps.dispatch_queue_url).await {
        tracing::debug!(error = %e, "queue warm-up");
    }
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let deps = &deps;
        async move {
            // A mapping that ran past its time limit in an earlier invocation may still
            // hold a thread (see `mapping::bounded`): start a fresh container rather than
            // share this one with it. Its record was parked; this batch comes back.
            let runaways = switchyard_common::mapping::runaway_threads();
            if runaways > 0 {
                tracing::error!(runaways, "runaway mapping threads still running; recycling the container");
                std::process::exit(1);
            }
            Ok::<_, Error>(handle(deps, event.payload).await)
        }
    }))
    .await
}
