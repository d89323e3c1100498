//! Values keyed with the bot token (HMAC-SHA256, in hex) and their comparison in constant
//! time: the webhook secret every replica derives, and invoice payloads' signatures. Knowing
//! such a value reveals nothing of the token.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `label` then `message`, keyed with `token`, in lower-case hex (64 digits).
pub(crate) fn keyed_hex(token: &[u8], label: &[u8], message: &[u8]) -> String {
    // Any key length is valid for HMAC.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(label);
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Equal, in time that does not depend on where they differ.
pub(crate) fn same_in_constant_time(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |differs, (a, b)| differs | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_equal() {
        assert!(same_in_constant_time(b"abc", b"abc"));
        assert!(!same_in_constant_time(b"abd", b"abc"));
        assert!(!same_in_constant_time(b"ab", b"abc"));
        assert!(!same_in_constant_time(b"", b"abc"));
    }

    #[test]
    fn a_label_and_message_are_one_input() {
        let whole = keyed_hex(b"123:abc", b"label:", b"text");
        assert_eq!(whole, keyed_hex(b"123:abc", b"label:text", b""));
        assert_eq!(whole.len(), 64);
        assert_ne!(whole, keyed_hex(b"456:def", b"label:", b"text"));
    }
}
