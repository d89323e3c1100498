//! What the client sends Replicate and takes from it, seen from the mock's side: creates carry
//! `webhook` and its `completed` filter when webhooks are on (and neither when off); outputs
//! are fetched without the API token and kept only up to 20 MB, whether or not the server says
//! their length up front.

use std::time::Duration;

use genbot_engine::catalogue::ModelRef;
use genbot_engine::replicate::output::{DownloadError, MAX_OUTPUT_BYTES};
use genbot_engine::replicate::webhook::WebhookSecret;
use genbot_engine::replicate::{ReplicateClient, WebhookSettings};
use genbot_mocks::replicate::{ReplicateMock, ReplicateMockConfig};
use secrecy::SecretString;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn flux() -> ModelRef {
    ModelRef::Official {
        owner: "black-forest-labs".into(),
        name: "flux-schnell".into(),
    }
}

fn client(mock: &ReplicateMock) -> ReplicateClient {
    ReplicateClient::new(
        mock.url().parse().unwrap(),
        Some(&SecretString::from("r8_do_not_leak")),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_carry_the_webhook_and_the_completed_filter_only_when_webhooks_are_on() {
    let mock = ReplicateMock::start(ReplicateMockConfig::default())
        .await
        .unwrap();
    let input = json!({ "prompt": "a lighthouse" });
    client(&mock)
        .create_prediction(&flux(), &input)
        .await
        .unwrap();
    let receiver = "https://bot.example/replicate/webhook?k=1";
    let with_webhooks = client(&mock).with_webhooks(WebhookSettings {
        url: receiver.parse().unwrap(),
        secret: WebhookSecret::parse(&mock.webhook_secret()).unwrap(),
        reconcile: Duration::from_secs(30),
    });
    with_webhooks
        .create_prediction(
            &ModelRef::Version(
                "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637".into(),
            ),
            &input,
        )
        .await
        .unwrap();
    with_webhooks
        .create_prediction(&flux(), &input)
        .await
        .unwrap();

    let bodies = mock.create_bodies();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert_eq!(
        bodies[0],
        json!({ "input": input }),
        "polling: no webhook keys"
    );
    for body in &bodies[1..] {
        assert_eq!(body["input"], input, "{body}");
        assert_eq!(body["webhook"], json!(receiver), "{body}");
        assert_eq!(
            body["webhook_events_filter"],
            json!(["completed"]),
            "only the end is posted (not every log line): {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_fetched_without_the_token_and_kept_up_to_20_mb() {
    let mock = ReplicateMock::start(ReplicateMockConfig::default())
        .await
        .unwrap();
    let client = client(&mock);
    let url = format!("{}/files/out.png", mock.url());

    let small = client.download_output(&url).await.unwrap();
    assert!(small.bytes.starts_with(b"\x89PNG"), "{small:?}");
    mock.set_output_size(Some(MAX_OUTPUT_BYTES));
    let largest = client.download_output(&url).await.unwrap();
    assert_eq!(largest.bytes.len(), MAX_OUTPUT_BYTES, "20 MB is still kept");
    mock.set_output_size(Some(MAX_OUTPUT_BYTES + 1));
    assert_eq!(
        client.download_output(&url).await,
        Err(DownloadError::TooLarge),
        "one byte over 20 MB (said by Content-Length)"
    );

    let stats = mock.stats();
    assert_eq!(stats.output_downloads, 3);
    assert_eq!(
        stats.output_requests_with_token, 0,
        "the API token went to an output URL"
    );
}

/// A server that sends no `Content-Length` (chunked) is cut off once the bytes pass 20 MB, not
/// read to its end: the bound holds on what arrives, not on what the server claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_of_unsaid_length_is_cut_off_past_20_mb() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/out.png", listener.local_addr().unwrap());
    const CHUNK: usize = 1024 * 1024;
    // 128 MB offered; the client should stop reading after a little over 20. The socket
    // buffers between them can hold tens of MB more (tcp_rmem's maximum is 32 MB on the CI
    // machine), so 30 MB offered was once all written though the client had stopped at 20.
    let offered = 128 * CHUNK;
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
        }
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut chunk = vec![0u8; CHUNK];
        chunk[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
        let mut sent = 0;
        while sent < offered {
            let frame = format!("{CHUNK:x}\r\n");
            // The client hanging up mid-body is the expected end.
            if socket.write_all(frame.as_bytes()).await.is_err()
                || socket.write_all(&chunk).await.is_err()
                || socket.write_all(b"\r\n").await.is_err()
            {
                return sent;
            }
            sent += CHUNK;
            chunk[..8].fill(0);
        }
        let _ = socket.write_all(b"0\r\n\r\n").await;
        sent
    });
    let client = reqwest::Client::new();
    let outcome = genbot_engine::replicate::output::download(&client, &url).await;
    assert_eq!(outcome.map(|o| o.bytes.len()), Err(DownloadError::TooLarge));
    drop(client);
    let sent = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server is still sending")
        .unwrap();
    assert!(
        sent < offered,
        "all {sent} bytes were read: the download was not cut off"
    );
}
