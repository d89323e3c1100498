//! Replicate's webhooks, verified as Standard Webhooks: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` headers; the signature is HMAC-SHA256 over `id.timestamp.body`, keyed
//! with the base64-decoded part of the `whsec_…` secret, sent as `v1,<base64>` (several may be
//! given, separated by spaces, while a secret rotates).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a webhook's timestamp may be from now, either way (replays of old requests fail).
pub const TOLERANCE_SECS: i64 = 5 * 60;

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
        let encoded = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or("a webhook secret starts with `whsec_`")?;
        let key = BASE64
            .decode(encoded)
            .map_err(|_| "the part after `whsec_` is not base64")?;
        if key.is_empty() {
            return Err("the webhook secret is empty".into());
        }
        Ok(WebhookSecret { key })
    }

    /// `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac = self.mac(id, timestamp, body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
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
    /// # Errors
    /// A header is missing or malformed, the timestamp is off by more than
    /// [`TOLERANCE_SECS`], or no `v1` signature matches (compared in constant time).
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
        if (now - timestamp).abs() > TOLERANCE_SECS {
            return Err(WebhookError::OutsideTolerance {
                skew_secs: now - timestamp,
            });
        }
        let signatures = headers
            .signature
            .ok_or(WebhookError::MissingHeader("webhook-signature"))?;
        let matched = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| BASE64.decode(s).ok())
            .any(|expected| {
                self.mac(id, timestamp, body)
                    .verify_slice(&expected)
                    .is_ok()
            });
        if matched {
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
    #[error("the body is not a prediction: {0}")]
    NotAPrediction(String),
    #[error("Replicate webhooks are not enabled (REPLICATE_WEBHOOK_URL is unset)")]
    NotEnabled,
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
