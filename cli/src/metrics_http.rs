//! `/metrics` and `/health` for the daemons whose own API is not HTTP (the
//! update engine and locksmith speak over unix sockets; the overlay has no
//! API): a small HTTP listener, opt-in with the daemon's metrics flag, that
//! renders the daemon's state in Prometheus text format on each scrape and
//! answers health in etcd's shape (`{"health":"true"}`, 503 otherwise).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

/// Renders the exposition on each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;
/// `Ok` when healthy, else why not.
pub type Health = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

fn health_answer(h: &Health) -> Response {
    match h() {
        Ok(()) => Json(json!({"health": "true"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"health": "false", "reason": reason})),
        )
            .into_response(),
    }
}

/// The router: `GET /metrics`, `GET /health` and flannel's `GET /healthz`.
pub fn router(render: Render, health: Health) -> Router {
    let h2 = health.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, keelson_kv::metrics::CONTENT_TYPE)],
                        render(),
                    )
                }
            }),
        )
        .route(
            "/health",
            get(move || async move { health_answer(&health) }),
        )
        .route("/healthz", get(move || async move { health_answer(&h2) }))
}

/// Binds `addr`; the error names it, so a daemon can refuse to start.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for /metrics on {addr}: {e}"))
}

/// Serves on `listener` in the background until `shutdown` resolves.
pub fn spawn(
    listener: tokio::net::TcpListener,
    render: Render,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics and /health");
    }
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(render, health))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("the /metrics listener failed: {e}");
        }
    });
}
