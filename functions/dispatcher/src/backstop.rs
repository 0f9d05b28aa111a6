//! The cold-start check that the queues' redrive backstop is out of reach of every
//! retry budget. The number is read from the queues themselves, so the template's
//! `RedriveMaxReceiveCount` and the flow file cannot drift apart unnoticed.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;
use switchyard_common::budget;
use switchyard_common::config::Config;

/// The dispatcher's cold-start checks, for its `main` and the local runner alike: one
/// delivery's worst case fits `function_timeout`, and no retry budget reaches the
/// redrive backstop of `queue_urls`. Returns the lowest `maxReceiveCount` among them.
pub async fn check_budgets(
    sqs: &aws_sdk_sqs::Client,
    config: &Config,
    function_timeout: std::time::Duration,
    queue_urls: &[&str],
) -> Result<u32, String> {
    budget::check_function_timeout(config, function_timeout).map_err(|e| e.to_string())?;
    check(sqs, config, queue_urls).await
}

/// Reads each queue's `RedrivePolicy` and checks every destination's budget against
/// it; returns the lowest `maxReceiveCount`.
pub async fn check(sqs: &aws_sdk_sqs::Client, config: &Config, queue_urls: &[&str]) -> Result<u32, String> {
    let mut lowest = u32::MAX;
    for url in queue_urls {
        let out = sqs
            .get_queue_attributes()
            .queue_url(*url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| format!("cannot read the redrive policy of {url}: {}", DisplayErrorContext(e)))?;
        let policy = out.attributes().and_then(|a| a.get(&QueueAttributeName::RedrivePolicy));
        let count = budget::max_receive_count(url, policy.map(String::as_str)).map_err(|e| e.to_string())?;
        budget::check_backstop(config, url, count).map_err(|e| e.to_string())?;
        lowest = lowest.min(count);
    }
    Ok(lowest)
}
