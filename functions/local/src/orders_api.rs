//! A local stand-in for the example polling source: the legacy ERP's orders API,
//! which has no webhooks. `GET /api/orders?updated_since=T&limit=N` answers the
//! orders changed after `T` (oldest first, at most `N`), the cursor to go on from and
//! whether there is more — what `[sources.legacy-orders]` in the flow file reads.
//! Requests need `Authorization: Bearer <token>`.
//!
//! The tests change orders, slow the API down, make it fail, and count its requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Default)]
struct Inner {
    /// Every order, by id; listed by `updated_at`.
    orders: HashMap<String, Value>,
    /// Authorized requests received (counted on arrival, before any delay).
    requests: u64,
    /// Requests answered with 503 from now on (counted down).
    failing: u32,
    delay: Duration,
}

/// The orders API; clones share one store.
#[derive(Clone)]
pub struct OrdersApi {
    inner: Arc<Mutex<Inner>>,
    token: String,
}

/// One order of the example, as the legacy API shows it.
pub fn order(id: &str, updated_at: &str) -> Value {
    json!({
        "id": id,
        "updated_at": updated_at,
        "status": "released",
        "customer": { "name": "Grace Hopper" },
        "delivery_address": { "street": "1 Example Street", "town": "Arlington", "zip": "22201", "country_code": "us" },
        "order_lines": [ { "article": "SKU-RED-42", "qty": 2 } ]
    })
}

impl OrdersApi {
    pub fn new(token: impl Into<String>) -> Self {
        Self { inner: Arc::default(), token: token.into() }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Adds or replaces an order (a new `updated_at` is a new version).
    pub fn put(&self, order: Value) {
        let id = order["id"].as_str().unwrap_or_default().to_owned();
        self.with(|i| i.orders.insert(id, order));
    }

    /// Authorized requests received so far (the one being answered included).
    pub fn requests(&self) -> u64 {
        self.with(|i| i.requests)
    }

    /// The next `n` requests are answered 503.
    pub fn fail_next(&self, n: u32) {
        self.with(|i| i.failing = n);
    }

    /// Each page takes this long to answer.
    pub fn slow_down(&self, delay: Duration) {
        self.with(|i| i.delay = delay);
    }

    /// Serves on `addr` (port 0 for any) from a thread of its own, so that a busy test
    /// runtime never delays its answers.
    pub fn start_apart(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let app = Router::new().route("/api/orders", get(list)).with_state(self.clone());
        std::thread::Builder::new().name("orders-api".into()).spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = axum::serve(listener, app).await {
                            tracing::error!(error = %e, "orders API stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "orders API cannot listen"),
                }
            })
        })?;
        Ok(local)
    }
}

async fn list(
    State(api): State<OrdersApi>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let authorized =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {}", api.token));
    if !authorized {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "unauthorized"})));
    }
    let delay = api.with(|i| {
        i.requests += 1;
        i.delay
    });
    tokio::time::sleep(delay).await;
    let refuse = api.with(|i| {
        let was = i.failing;
        i.failing = was.saturating_sub(1);
        was > 0
    });
    if refuse {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "try later"})));
    }
    let since = query.get("updated_since").cloned().unwrap_or_default();
    let limit = query.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(100).clamp(1, 1000);
    let (page, more) = api.with(|i| {
        // RFC 3339 in one format and zone: the text order is the time order.
        let mut changed: Vec<&Value> =
            i.orders.values().filter(|o| o["updated_at"].as_str().unwrap_or_default() > since.as_str()).collect();
        changed.sort_by(|a, b| a["updated_at"].as_str().cmp(&b["updated_at"].as_str()));
        let more = changed.len() > limit;
        (changed.into_iter().take(limit).cloned().collect::<Vec<_>>(), more)
    });
    let next = page.last().map_or(since.clone(), |o| o["updated_at"].as_str().unwrap_or_default().to_owned());
    (StatusCode::OK, Json(json!({ "orders": page, "next_cursor": next, "has_more": more })))
}
