//! The buttons' callback data, written and read in one place: each feature writes its buttons'
//! data here ([`Button::data`]) and the router reads a press back ([`Button::parse`]) to hand
//! it to the one feature that owns it. Also the keyboard under a delivered image, which the
//! outbox sends and the re-run feature answers.

use genbot_store::JobId;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use crate::texts::{self, Lang};

const MODEL: &str = "model:";
const BUY: &str = "buy:";
const SETTING: &str = "set:";
const AGAIN: &str = "again:";
const SAME_SEED: &str = "seed:";
const AS_FILE: &str = "file:";
const OLDER: &str = "hist:";

/// A button press's data. Any text may come (clients can send any data): what is not one of
/// ours reads as [`Button::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Button<'a> {
    /// `/models`: choose this model (its id, as written).
    Model(&'a str),
    /// `/buy`: this package's invoice (`CREDITS:STARS`, as written).
    Buy(&'a str),
    /// `/settings`: `NAME=VALUE`, or `reset` (as written).
    Setting(&'a str),
    /// Under an image: the same job again with a new seed.
    Again(JobId),
    /// Under an image: the same job again with its seed.
    SameSeed(JobId),
    /// Under an image: the original as a file.
    AsFile(JobId),
    /// `/history`: the page older than this job.
    Older(JobId),
    /// None of ours: stale, or forged.
    Unknown,
}

impl<'a> Button<'a> {
    /// Reads a press's data.
    pub(crate) fn parse(data: &'a str) -> Button<'a> {
        let job = |prefix: &str| {
            data.strip_prefix(prefix)
                .and_then(|id| id.parse::<i64>().ok())
                .map(JobId)
        };
        if let Some(rest) = data.strip_prefix(SETTING) {
            Button::Setting(rest)
        } else if let Some(job) = job(AGAIN) {
            Button::Again(job)
        } else if let Some(job) = job(SAME_SEED) {
            Button::SameSeed(job)
        } else if let Some(job) = job(AS_FILE) {
            Button::AsFile(job)
        } else if let Some(job) = job(OLDER) {
            Button::Older(job)
        } else if let Some(package) = data.strip_prefix(BUY) {
            Button::Buy(package)
        } else if let Some(model) = data.strip_prefix(MODEL) {
            Button::Model(model)
        } else {
            Button::Unknown
        }
    }

    /// The data a button carries to be read back as `self`.
    pub(crate) fn data(&self) -> String {
        match self {
            Button::Model(model) => format!("{MODEL}{model}"),
            Button::Buy(package) => format!("{BUY}{package}"),
            Button::Setting(setting) => format!("{SETTING}{setting}"),
            Button::Again(job) => format!("{AGAIN}{}", job.0),
            Button::SameSeed(job) => format!("{SAME_SEED}{}", job.0),
            Button::AsFile(job) => format!("{AS_FILE}{}", job.0),
            Button::Older(job) => format!("{OLDER}{}", job.0),
            Button::Unknown => String::new(),
        }
    }
}

/// The buttons under a delivered image.
pub(crate) fn result_keyboard(lang: Lang, job: JobId) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([vec![
        InlineKeyboardButton::callback(texts::again_button(lang), Button::Again(job).data()),
        InlineKeyboardButton::callback(texts::same_seed_button(lang), Button::SameSeed(job).data()),
        InlineKeyboardButton::callback(texts::as_file_button(lang), Button::AsFile(job).data()),
    ]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_that_is_not_ours_is_unknown() {
        for data in [
            "", "again:", "again:x", "seed:1.5", "hist:-", "other:1", "model",
        ] {
            assert_eq!(Button::parse(data), Button::Unknown, "{data}");
        }
        assert_eq!(Button::parse("set:reset"), Button::Setting("reset"));
        assert_eq!(Button::parse("buy:10:50"), Button::Buy("10:50"));
    }

    proptest::proptest! {
        /// Button data is whatever a client sends: read without panicking; our own data reads
        /// back as the button it was written for.
        #[test]
        fn any_button_data_is_read_without_panicking(
            data in crate::command::arbitrary_text(),
            job in proptest::prelude::any::<i64>(),
        ) {
            let _ = Button::parse(&data);
            let job = JobId(job);
            for button in [
                Button::Again(job),
                Button::SameSeed(job),
                Button::AsFile(job),
                Button::Older(job),
                Button::Model(&data),
                Button::Buy(&data),
                Button::Setting(&data),
            ] {
                let written = button.data();
                proptest::prop_assert_eq!(Button::parse(&written), button);
            }
        }
    }
}
