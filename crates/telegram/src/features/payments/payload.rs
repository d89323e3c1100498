//! The invoice payload, `credits:CREDITS:STARS` (and, read but not yet written, with
//! `:SIGNATURE` after it): what an invoice sold, so the pre-checkout answer and the credit need
//! no state kept between the invoice and the payment.
//!
//! The signature (HMAC-SHA256 of the package, keyed with the bot token, 16 hex digits) tells a
//! payload this bot wrote from one it never did: a signed package is credited whatever
//! `STARS_PACKAGES` says now (the buyer paid for what the invoice sold); an unsigned one only
//! when it is no better a deal than the offer (see the payments feature's `paid_package`).

use genbot_config::StarsPackage;

use crate::keyed::{keyed_hex, same_in_constant_time};

pub(super) const PREFIX: &str = "credits:";
/// Hex digits of the signature kept: 64 bits, against forgers without the token.
const SIGNATURE_HEX: usize = 16;

/// A package as its button's data names it: `CREDITS:STARS`.
pub(super) fn package_text(package: StarsPackage) -> String {
    format!("{}:{}", package.credits, package.stars)
}

pub(super) fn parse_package(text: &str) -> Option<StarsPackage> {
    let (credits, stars) = text.split_once(':')?;
    Some(StarsPackage {
        credits: credits.parse().ok()?,
        stars: stars.parse().ok()?,
    })
}

/// The payload of an invoice for `package`, unsigned: what this build sends. A build before
/// signatures reads `credits:CREDITS:STARS` only, so a signed payload handled by one (a rolling
/// deploy of several replicas, or a rollback) would buy nothing; this build reads signed ones,
/// and the next can write them ([`write`]).
pub(super) fn write_unsigned(package: StarsPackage) -> String {
    format!("{PREFIX}{}", package_text(package))
}

/// The payload of an invoice for `package`, signed with `token` (see [`write_unsigned`]).
#[cfg_attr(not(test), allow(dead_code))]
pub(super) fn write(package: StarsPackage, token: &str) -> String {
    let text = package_text(package);
    format!("{PREFIX}{text}:{}", signature(&text, token))
}

/// What a payload names, and whether this bot (holding `token`) signed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Invoiced {
    pub(super) package: StarsPackage,
    pub(super) signed: bool,
}

/// `payload` read: `None` when it names no package.
pub(super) fn read(payload: &str, token: &str) -> Option<Invoiced> {
    let rest = payload.strip_prefix(PREFIX)?;
    let (text, given) = match rest.rsplit_once(':') {
        Some((text, given)) if text.contains(':') => (text, Some(given)),
        _ => (rest, None),
    };
    let package = parse_package(text)?;
    let signed = given.is_some_and(|given| {
        same_in_constant_time(given.as_bytes(), signature(text, token).as_bytes())
    });
    Some(Invoiced { package, signed })
}

fn signature(package_text: &str, token: &str) -> String {
    let mut hex = keyed_hex(
        token.as_bytes(),
        b"genbot invoice payload v1:",
        package_text.as_bytes(),
    );
    hex.truncate(SIGNATURE_HEX);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123:abc";

    #[test]
    fn a_written_payload_reads_back_signed_and_only_with_its_token() {
        let package = StarsPackage {
            credits: 60,
            stars: 250,
        };
        let payload = write(package, TOKEN);
        assert!(payload.starts_with("credits:60:250:") && payload.len() <= 128);
        assert_eq!(
            read(&payload, TOKEN),
            Some(Invoiced {
                package,
                signed: true
            })
        );
        assert_eq!(read(&payload, "456:def").map(|i| i.signed), Some(false));
        let unsigned = read("credits:60:250", TOKEN);
        assert_eq!(
            unsigned,
            Some(Invoiced {
                package,
                signed: false
            })
        );
        let forged = payload.replace("credits:60:", "credits:99999:");
        assert_eq!(read(&forged, TOKEN).map(|i| i.signed), Some(false));
        for unreadable in ["credits:60", "credits:60:x:y", "other:60:250", ""] {
            assert_eq!(read(unreadable, TOKEN), None, "{unreadable}");
        }
    }

    proptest::proptest! {
        /// Payloads shaped like ours (numbers, colons, a signature or anything after them):
        /// one reads as signed only when this token wrote it, and then names what was written.
        #[test]
        fn only_a_payload_this_token_wrote_reads_as_signed(
            credits in 0u32..200_000,
            stars in 0u32..200_000,
            tail in proptest::option::of("[0-9a-f:]{0,20}"),
            other_token in "[0-9]{1,10}:[A-Za-z0-9_-]{1,40}",
        ) {
            let package = StarsPackage { credits, stars };
            let written = write(package, TOKEN);
            proptest::prop_assert_eq!(read(&written, TOKEN), Some(Invoiced { package, signed: true }));
            let foreign = read(&written, &other_token).map(|i| i.signed);
            proptest::prop_assert_eq!(foreign, Some(other_token == TOKEN));
            let made_up = match &tail {
                Some(tail) => format!("{PREFIX}{credits}:{stars}:{tail}"),
                None => format!("{PREFIX}{credits}:{stars}"),
            };
            if let Some(invoiced) = read(&made_up, TOKEN) {
                proptest::prop_assert_eq!(invoiced.package, package);
                proptest::prop_assert!(!invoiced.signed || made_up == written);
            }
        }
    }
}
