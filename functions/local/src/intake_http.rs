//! Plays API Gateway's HTTP API in front of intake: each HTTP request becomes the
//! payload-v2 event API Gateway would send, and intake's answer goes back as HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::encodings::Body as LambdaBody;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use switchyard_common::runtime::now_ms;
use switchyard_intake::Deps;

/// API Gateway's own payload limit; intake enforces its smaller one.
const GATEWAY_LIMIT: usize = 10 * 1024 * 1024;

pub fn router(deps: Arc<Deps>) -> Router {
    Router::new().fallback(handle).with_state(deps)
}

pub async fn serve(deps: Arc<Deps>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(deps)).await
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn handle(State(deps): State<Arc<Deps>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, GATEWAY_LIMIT).await else {
        return plain(413, "request entity too large");
    };
    let event = gateway_event(parts.method, &parts.uri, parts.headers, &bytes);
    // The function's timeout in the template is 10 s.
    to_http(switchyard_intake::handle(&deps, event, now_ms() + 10_000).await)
}

/// The payload-v2 event API Gateway's HTTP API builds for a request to
/// `/hooks/{source}` (the benchmarks invoke the intake binary with it).
pub fn gateway_event(
    method: http::Method,
    uri: &http::Uri,
    headers: http::HeaderMap,
    bytes: &[u8],
) -> ApiGatewayV2httpRequest {
    let mut event = ApiGatewayV2httpRequest::default();
    event.version = Some("2.0".to_owned());
    event.raw_path = Some(uri.path().to_owned());
    event.raw_query_string = Some(uri.query().unwrap_or_default().to_owned());
    event.route_key = Some("POST /hooks/{source}".to_owned());
    if let Some(source) = uri.path().strip_prefix("/hooks/") {
        if !source.is_empty() && !source.contains('/') {
            event.path_parameters.insert("source".to_owned(), source.to_owned());
        }
    }
    event.headers = headers;
    event.request_context.http.method = method;
    event.request_context.http.path = Some(uri.path().to_owned());
    event.request_context.request_id = Some(uuid_like());
    event.request_context.time_epoch = now_ms();
    // API Gateway base64-encodes bodies that are not valid UTF-8 text.
    match String::from_utf8(bytes.to_vec()) {
        Ok(text) => event.body = Some(text),
        Err(_) => {
            event.body = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
            event.is_base64_encoded = true;
        }
    }
    event
}

fn uuid_like() -> String {
    format!("local-{}", now_ms())
}

fn to_http(r: ApiGatewayV2httpResponse) -> Response {
    let mut builder = Response::builder().status(u16::try_from(r.status_code).unwrap_or(500));
    for (name, value) in &r.headers {
        builder = builder.header(name, value);
    }
    let body = match r.body {
        Some(LambdaBody::Text(t)) => Body::from(t),
        Some(LambdaBody::Binary(b)) => Body::from(b),
        _ => Body::empty(),
    };
    builder.body(body).unwrap_or_else(|_| plain(500, "bad response"))
}

fn plain(status: u16, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}
