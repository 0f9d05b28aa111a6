//! A CRM that keeps what it is sent: `POST /api/contacts` stores a contact by its
//! email (an upsert), `GET /api/contacts/{email}` reads one back (404 when it has
//! none), `GET /api/contacts` lists them. Its contacts can be lost or altered behind
//! switchyard's back, as a real destination's can, for the reconciliation tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Clone, Default)]
pub struct Crm {
    contacts: Arc<Mutex<BTreeMap<String, Value>>>,
}

impl Crm {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Value>) -> T) -> T {
        f(&mut self.contacts.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn len(&self) -> usize {
        self.with(|c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn has(&self, email: &str) -> bool {
        self.with(|c| c.contains_key(email))
    }

    /// Loses a contact silently.
    pub fn lose(&self, email: &str) {
        self.with(|c| c.remove(email));
    }

    /// Changes one field of a contact silently.
    pub fn alter(&self, email: &str, field: &str, value: Value) {
        self.with(|c| c.get_mut(email).map(|contact| contact[field] = value));
    }

    /// A contact no delivery made.
    pub fn insert(&self, contact: Value) {
        let email = contact["email"].as_str().unwrap_or_default().to_owned();
        self.with(|c| c.insert(email, contact));
    }

    /// Serves on `addr` from a thread of its own.
    pub fn start_apart(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let app = Router::new()
            .route("/api/contacts", get(list).post(create))
            .route("/api/contacts/{email}", get(read))
            .with_state(self.clone());
        std::thread::Builder::new().name("crm".into()).spawn(move || {
            runtime.block_on(async move {
                if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                    let _ = axum::serve(listener, app).await;
                }
            })
        })?;
        Ok(local)
    }
}

async fn create(State(crm): State<Crm>, Json(contact): Json<Value>) -> (StatusCode, Json<Value>) {
    crm.insert(contact.clone());
    (StatusCode::CREATED, Json(contact))
}

async fn read(State(crm): State<Crm>, Path(email): Path<String>) -> (StatusCode, Json<Value>) {
    match crm.with(|c| c.get(&email).cloned()) {
        Some(contact) => (StatusCode::OK, Json(contact)),
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "no such contact"}))),
    }
}

async fn list(State(crm): State<Crm>) -> Json<Value> {
    Json(json!({ "contacts": crm.with(|c| c.values().cloned().collect::<Vec<_>>()) }))
}
