//! Serving a mock's router in the background until its handle is dropped.

use axum::serve::ListenerExt;
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
        // As Telegram's and Replicate's servers answer: at once, not after Nagle's wait for the
        // previous answer's acknowledgement.
        let listener = listener.tap_io(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set on a mock connection");
            }
        });
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, mock = name, "mock server stopped");
        }
    });
    stop
}
