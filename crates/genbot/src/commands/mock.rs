//! `genbot mock …`: the mock servers as standalone processes.

use std::time::Duration;

use anyhow::Context;
use genbot_mocks::replicate::{ReplicateMockConfig, ServerRateLimit};
use tokio::net::TcpListener;

use crate::cli::{ReplicateMockArgs, TelegramMockArgs};

pub(crate) async fn replicate(args: ReplicateMockArgs) -> anyhow::Result<()> {
    let (listener, address) = bind(args.port).await?;
    let config = ReplicateMockConfig {
        median_latency: Duration::from_millis(args.median_ms),
        latency_sigma: args.sigma,
        failure_rate: args.failure_rate,
        rate_limit: args.rate_limit.map(|per_second| ServerRateLimit {
            per_second,
            retry_after_header: true,
        }),
        ..ReplicateMockConfig::default()
    };
    println!("replicate mock listening on http://{address} (REPLICATE_API_URL=http://{address}); Ctrl-C stops it");
    genbot_mocks::replicate::serve(listener, config, shutdown_signal())
        .await
        .context("The Replicate mock failed")
}

pub(crate) async fn telegram(args: TelegramMockArgs) -> anyhow::Result<()> {
    let (listener, address) = bind(args.port).await?;
    let config = genbot_mocks::telegram::TelegramMockConfig {
        enforce_limits: args.enforce_limits,
        ..Default::default()
    };
    println!("telegram mock listening on http://{address} (TELEGRAM_API_URL=http://{address}); Ctrl-C stops it");
    genbot_mocks::telegram::serve(listener, config, shutdown_signal())
        .await
        .context("The Telegram mock failed")
}

/// Listens on `127.0.0.1:port` (0 = any free port) and tells which address it got.
async fn bind(port: u16) -> anyhow::Result<(TcpListener, std::net::SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("Failed to listen on 127.0.0.1:{port}"))?;
    let address = listener
        .local_addr()
        .context("Failed to read the bound address")?;
    Ok((listener, address))
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
