//! Serving a mock's router in the background until its handle is dropped.

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Serves `app` on `listener` in a task; the server stops gracefully when the returned sender
/// is dropped (the mock handle owns it).
pub(crate) fn spawn(listener: TcpListener, app: Router, name: &'static str) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, mock = name, "mock server stopped");
        }
    });
    stop
}
