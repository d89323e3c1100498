//! Replicate's webhooks, verified as Standard Webhooks: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` headers; the signature is HMAC-SHA256 over `id.timestamp.body`, keyed
//! with the base64-decoded part of the `whsec_…` secret, sent as `v1,<base64>` (several may be
//! given, separated by spaces, while a secret rotates).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

/// How far a webhook's timestamp may be from now, either way (replays of old requests fail).
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// Signatures considered in one `webhook-signature` header. Standard Webhooks sends one per
/// active secret, so two while a secret rotates; more than this is not a sender we know, and
/// refusing it bounds what an unauthenticated request can make us compare.
pub const MAX_SIGNATURES: usize = 16;

/// Largest webhook body taken. Replicate posts the whole prediction: its input (a picture
/// passed inline is at most 256 KiB, about 342 KiB as a base64 data URL), output URLs, logs and
/// metrics. 1 MiB leaves three times that, and bounds the one MAC an unauthenticated request
/// costs.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The webhook signing key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (Replicate's `GET /v1/webhooks/default/secret` answer).
    ///
    /// # Errors
    /// The prefix is missing or the rest is not base64; the message never contains the secret.
    pub fn parse(text: &str) -> Result<WebhookSecret, String> {
        let key = genbot_config::replicate_webhook_key(text)?;
        Ok(WebhookSecret { key })
    }

    /// `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac = self.mac(id, timestamp, body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        #[cfg(test)]
        tests::MACS_COMPUTED.with(|n| n.set(n.get() + 1));
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// Checks a delivery's headers against its body at `now` (unix seconds).
    ///
    /// Everything an unauthenticated sender controls is bounded before any MAC is computed:
    /// the timestamp, the body size ([`MAX_BODY_BYTES`]) and the number of signatures
    /// ([`MAX_SIGNATURES`]). The MAC is then computed once and compared, in constant time,
    /// with each `v1` signature; any one may match (Standard Webhooks, for secret rotation).
    ///
    /// # Errors
    /// A header is missing or malformed, the timestamp is off by more than
    /// [`TOLERANCE_SECS`], the body or the signature list is too large, or no `v1` signature
    /// matches.
    pub fn verify(
        &self,
        headers: &WebhookHeaders<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<(), WebhookError> {
        let id = headers
            .id
            .ok_or(WebhookError::MissingHeader("webhook-id"))?;
        let timestamp: i64 = headers
            .timestamp
            .ok_or(WebhookError::MissingHeader("webhook-timestamp"))?
            .trim()
            .parse()
            .map_err(|_| WebhookError::BadTimestamp)?;
        // Any i64 may come from an unauthenticated caller: no subtraction that can overflow.
        if now.abs_diff(timestamp) > TOLERANCE_SECS.unsigned_abs() {
            return Err(WebhookError::OutsideTolerance {
                skew_secs: now.saturating_sub(timestamp),
            });
        }
        if body.len() > MAX_BODY_BYTES {
            return Err(WebhookError::BodyTooLarge {
                max: MAX_BODY_BYTES,
            });
        }
        let signatures = headers
            .signature
            .ok_or(WebhookError::MissingHeader("webhook-signature"))?;
        // Counting stops at the first entry past the cap: a huge header is not walked whole.
        let entries: Vec<&str> = signatures
            .split_ascii_whitespace()
            .take(MAX_SIGNATURES + 1)
            .collect();
        if entries.len() > MAX_SIGNATURES {
            return Err(WebhookError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        let expected = self.mac(id, timestamp, body).finalize().into_bytes();
        // Every entry is decoded and compared (no early exit), each comparison in constant
        // time, so the time taken says nothing about which entry came close.
        let matched = entries
            .iter()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| BASE64.decode(encoded).ok())
            .fold(Choice::from(0), |matched, given| {
                matched | given.as_slice().ct_eq(expected.as_slice())
            });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(WebhookError::BadSignature)
        }
    }
}

/// The Standard Webhooks headers of one delivery, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Why a webhook delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {skew_secs} s from now (more than {TOLERANCE_SECS} s)")]
    OutsideTolerance { skew_secs: i64 },
    #[error("no webhook-signature matches")]
    BadSignature,
    #[error("webhook-signature has more than {max} entries")]
    TooManySignatures { max: usize },
    #[error("the body is larger than {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("the body is not a prediction: {0}")]
    NotAPrediction(String),
    #[error("Replicate webhooks are not enabled (REPLICATE_WEBHOOK_URL is unset)")]
    NotEnabled,
    /// Genuine, but its outcome could not be recorded for the replica running the job: refused
    /// so that Replicate sends it again.
    #[error("the outcome could not be recorded: {0}")]
    NotRecorded(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// MACs computed over a body on this thread: the cost an unauthenticated sender can
        /// make the receiver pay.
        pub(super) static MACS_COMPUTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn macs_during(f: impl FnOnce()) -> usize {
        let before = MACS_COMPUTED.with(std::cell::Cell::get);
        f();
        MACS_COMPUTED.with(std::cell::Cell::get) - before
    }

    // The Standard Webhooks specification's own example.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers<'a>(signature: &'a str, timestamp: &'a str) -> WebhookHeaders<'a> {
        WebhookHeaders {
            id: Some(ID),
            timestamp: Some(timestamp),
            signature: Some(signature),
        }
    }

    #[test]
    fn signs_and_verifies_the_specifications_example() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY), SIGNATURE);
        let ts = TIMESTAMP.to_string();
        assert_eq!(
            secret.verify(&headers(SIGNATURE, &ts), BODY, TIMESTAMP),
            Ok(())
        );
        // One of several (a rotation) is enough.
        let several = format!("v1,bm90IGl0 {SIGNATURE}");
        assert_eq!(
            secret.verify(&headers(&several, &ts), BODY, TIMESTAMP + 60),
            Ok(())
        );
    }

    #[test]
    fn refuses_tampering_staleness_and_missing_headers() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let ts = TIMESTAMP.to_string();
        assert_eq!(
            secret.verify(&headers(SIGNATURE, &ts), br#"{"test": 1}"#, TIMESTAMP),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            secret.verify(
                &headers(SIGNATURE, &ts),
                BODY,
                TIMESTAMP + TOLERANCE_SECS + 1
            ),
            Err(WebhookError::OutsideTolerance {
                skew_secs: TOLERANCE_SECS + 1
            })
        );
        // Extreme timestamps from an unauthenticated caller are refused, never overflow.
        for extreme in [i64::MIN, i64::MAX] {
            let ts = extreme.to_string();
            assert!(matches!(
                secret.verify(&headers(SIGNATURE, &ts), BODY, TIMESTAMP),
                Err(WebhookError::OutsideTolerance { .. })
            ));
        }
        let other = WebhookSecret::parse("whsec_c2VjcmV0").unwrap();
        assert_eq!(
            other.verify(&headers(SIGNATURE, &ts), BODY, TIMESTAMP),
            Err(WebhookError::BadSignature)
        );
        let missing = WebhookHeaders {
            signature: None,
            ..headers(SIGNATURE, &ts)
        };
        assert_eq!(
            secret.verify(&missing, BODY, TIMESTAMP),
            Err(WebhookError::MissingHeader("webhook-signature"))
        );
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }

    #[test]
    fn a_flood_of_signatures_costs_one_mac_or_is_refused_before_any() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let ts = TIMESTAMP.to_string();
        // The attack seen in issue #20: tens of thousands of entries, each used to cost a MAC
        // over the whole body.
        let flood = vec!["v1,AAAA"; 40_000].join(" ");
        let mut refused = Ok(());
        let macs = macs_during(|| refused = secret.verify(&headers(&flood, &ts), BODY, TIMESTAMP));
        assert_eq!(
            refused,
            Err(WebhookError::TooManySignatures {
                max: MAX_SIGNATURES
            })
        );
        assert_eq!(macs, 0, "a refused header must not cost any MAC");

        // Up to the cap, wrong entries and the genuine one last: one MAC for all of them.
        let mut several = vec!["v1,AAAA"; MAX_SIGNATURES - 1];
        several.push(SIGNATURE);
        let several = several.join(" ");
        let mut verified = Err(WebhookError::BadSignature);
        let macs =
            macs_during(|| verified = secret.verify(&headers(&several, &ts), BODY, TIMESTAMP));
        assert_eq!(verified, Ok(()));
        assert_eq!(macs, 1);

        // None matching: still one MAC.
        let wrong = vec!["v1,AAAA"; MAX_SIGNATURES].join(" ");
        let mut refused = Ok(());
        let macs = macs_during(|| refused = secret.verify(&headers(&wrong, &ts), BODY, TIMESTAMP));
        assert_eq!(refused, Err(WebhookError::BadSignature));
        assert_eq!(macs, 1);
    }

    #[test]
    fn stale_or_oversized_deliveries_cost_no_mac() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let ts = TIMESTAMP.to_string();
        let mut refused = Ok(());
        let macs = macs_during(|| {
            refused = secret.verify(&headers(SIGNATURE, &ts), BODY, TIMESTAMP + 3_600);
        });
        assert!(matches!(
            refused,
            Err(WebhookError::OutsideTolerance { .. })
        ));
        assert_eq!(macs, 0);

        let huge = vec![b' '; MAX_BODY_BYTES + 1];
        let macs =
            macs_during(|| refused = secret.verify(&headers(SIGNATURE, &ts), &huge, TIMESTAMP));
        assert_eq!(
            refused,
            Err(WebhookError::BodyTooLarge {
                max: MAX_BODY_BYTES
            })
        );
        assert_eq!(macs, 0);
    }

    #[test]
    fn other_versions_and_extra_spaces_are_skipped_not_refused() {
        // Standard Webhooks: entries are space-separated `version,signature`; a receiver
        // ignores versions it does not know (`v1a` is the asymmetric one).
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let ts = TIMESTAMP.to_string();
        let mixed = format!("v1a,c2lnbmF0dXJl  {SIGNATURE} ");
        assert_eq!(
            secret.verify(&headers(&mixed, &ts), BODY, TIMESTAMP),
            Ok(())
        );
    }
}
