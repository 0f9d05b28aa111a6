//! Issue 7, part 6: the local runner tells the truth. `switchyard-local serve` resolves
//! destinations as a deployed function does (`SWITCHYARD_DESTINATION_{NAME}_URL`),
//! the example destinations follow a sink moved with `--sink`, and the banner names
//! where each destination's deliveries go — which is where they arrive.

use std::time::Duration;

use switchyard_common::runtime::now_ms;
use switchyard_common::signature::{sign, Scheme, SigningSecret};
use switchyard_e2e::runner::{serve, sink_lines, work_dir};
use switchyard_e2e::{eventually, local_secret, stripe_payment, LocalAws};
use switchyard_local::sink::Sink;

async fn post_event(intake: &str, event_id: &str) {
    let body = stripe_payment(event_id).to_string();
    let headers =
        sign(&Scheme::Stripe, &SigningSecret::new(local_secret("source/stripe")), body.as_bytes(), now_ms() / 1000, "")
            .unwrap();
    let mut req = reqwest::Client::new().post(format!("{intake}/hooks/stripe")).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status().as_u16(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_moved_with_dash_dash_sink_takes_the_example_crms_deliveries_as_the_banner_says() {
    let aws = LocalAws::start().await;
    let dir = work_dir("moved-sink");
    let (_runner, banner) = serve(&aws, &dir, &[], false).await;

    let crm = banner.routes.iter().find(|(name, ..)| name == "crm").expect("a banner line for crm");
    assert_ne!(banner.sink, "http://127.0.0.1:3001", "the sink was moved to a free port");
    assert_eq!((crm.1.as_str(), crm.2.as_str()), (banner.sink.as_str(), "(the local sink)"));

    post_event(&banner.intake, "evt_moved_sink").await;
    let arrived =
        eventually(Duration::from_secs(30), async || sink_lines(&dir).iter().any(|r| r["path"] == "/api/contacts"))
            .await;
    assert!(arrived, "the delivery reached the sink at {} (its file {})", banner.sink, dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_url_variable_takes_the_deliveries_and_the_banner_names_it() {
    let aws = LocalAws::start().await;
    let dir = work_dir("env-destination");
    let api = Sink::default();
    let api_addr = api.clone().start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{api_addr}");
    let (_runner, banner) = serve(&aws, &dir, &[("SWITCHYARD_DESTINATION_CRM_URL", url.clone())], false).await;

    let crm = banner.routes.iter().find(|(name, ..)| name == "crm").expect("a banner line for crm");
    assert_eq!((crm.1.as_str(), crm.2.as_str()), (url.as_str(), "(SWITCHYARD_DESTINATION_CRM_URL)"));

    post_event(&banner.intake, "evt_env_destination").await;
    let arrived =
        eventually(Duration::from_secs(30), async || api.received().iter().any(|r| r.path == "/api/contacts")).await;
    assert!(arrived, "the delivery reached {url}, where the banner said it would go");
    assert!(sink_lines(&dir).is_empty(), "nothing went to the runner's own sink");
}
