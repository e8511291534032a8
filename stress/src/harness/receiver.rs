//! The customer's webhook endpoint: takes status callbacks and inbound
//! messages and remembers what it was told, so the invariants can compare
//! it with what the journal says was delivered.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::Deserialize;

/// What the endpoint took.
#[derive(Debug, Default)]
pub struct Received {
    /// `Tern-Event-Id` of every status callback.
    events: Mutex<HashSet<String>>,
    /// Statuses reported per message.
    statuses: Mutex<HashMap<String, Vec<String>>>,
    /// Status callbacks taken, repeats included.
    pub deliveries: AtomicU64,
    /// Inbound messages taken.
    pub inbound: AtomicU64,
}

impl Received {
    /// Notes a status callback.
    pub fn record(&self, event_id: &str, message_id: &str, status: &str) {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).insert(event_id.to_owned());
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(message_id.to_owned())
            .or_default()
            .push(status.to_owned());
    }

    /// Whether a callback for this event came.
    pub fn has_event(&self, event_id: &str) -> bool {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).contains(event_id)
    }

    /// Distinct events reported.
    pub fn event_count(&self) -> u64 {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).len() as u64
    }

    /// Whether a callback reported this message in this status.
    pub fn has_status(&self, message_id: &str, status: &str) -> bool {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(message_id)
            .is_some_and(|s| s.iter().any(|s| s == status))
    }
}

/// The running endpoint.
#[derive(Debug)]
pub struct Receiver {
    /// Where status callbacks go.
    pub callback_url: String,
    /// Where inbound messages go.
    pub inbound_url: String,
    /// What came.
    pub received: Arc<Received>,
    handle: ServerHandle,
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    message_id: String,
    status: String,
}

async fn status(request: HttpRequest, body: web::Json<StatusBody>, received: web::Data<Received>) -> HttpResponse {
    received.deliveries.fetch_add(1, Ordering::Relaxed);
    let event_id = request.headers().get("Tern-Event-Id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    received.record(event_id, &body.message_id, &body.status);
    HttpResponse::NoContent().finish()
}

async fn inbound(request: HttpRequest, received: web::Data<Received>) -> HttpResponse {
    received.inbound.fetch_add(1, Ordering::Relaxed);
    // Inbound webhooks are recorded as callbacks of the inbound message.
    if let Some(id) = request.headers().get("Tern-Event-Id").and_then(|v| v.to_str().ok()) {
        received.events.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned());
    }
    HttpResponse::NoContent().finish()
}

impl Receiver {
    /// Listens on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let received = web::Data::new(Received::default());
        let shared = received.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::JsonConfig::default().limit(1 << 20))
                .route("/status", web::post().to(status))
                .route("/inbound", web::post().to(inbound))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            callback_url: format!("http://{addr}/status"),
            inbound_url: format!("http://{addr}/inbound"),
            received: received.into_inner(),
            handle,
        })
    }

    /// Stops listening.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}
