//! Judging a message the bot sent twice, from the mock's record of the wire and the moments
//! the bot's process was killed.
//!
//! A repeat is *at the wire* when the first copy's answer never reached a live bot: it was
//! never handed to the connection (the connection died with the process), or it was handed
//! over so shortly before a kill that the bot could not yet have recorded the delivery, and the
//! copy came after that kill. Telegram has no idempotency key, so such a repeat is inherent.
//! Any other repeat — the answer was handed over well before any kill, or no kill came between
//! the copies — is a defect: the bot read that the message was delivered and sent it again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::wire::{FileSend, MessageKey};

/// How long before a kill a handed-over answer still counts as not read by the bot. The bot
/// records a delivery in its database right after reading the answer; on a loaded 2-core
/// machine (the suite, the bot and its database on the same cores) that can take well over a
/// second, so 2 s is generous. A larger window would excuse real defects near a kill.
pub const WIRE_GRACE: Duration = Duration::from_secs(2);

/// A SIGKILL of a bot process: when the signal was sent and when the process was reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub signalled: Instant,
    pub dead: Instant,
}

impl Kill {
    /// Whether `send` was at the wire at this kill: it arrived before the process was gone,
    /// and its answer was never handed over or handed over within `grace` of the kill.
    pub fn caught(&self, send: &FileSend, grace: Duration) -> bool {
        let from = self.signalled.checked_sub(grace).unwrap_or(self.signalled);
        send.arrived <= self.dead
            && send
                .answered
                .is_none_or(|at| at >= from && at <= self.dead + grace)
    }
}

/// Why a message went out twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first copy was at the wire at kill number `kill` (index into the kills given).
    AtWire {
        kill: usize,
        /// How long before the signal its answer was handed over; `None`: never handed over.
        /// Zero when it was handed over after the signal.
        answered_before_kill: Option<Duration>,
    },
    /// The bot had the answer and sent the message again.
    Defect {
        /// How long before the second copy arrived the first copy's answer was handed over
        /// (`None`: never, though no kill came between them).
        answered_before_again: Option<Duration>,
        /// The first kill between the copies, if any, and how long before it the answer was
        /// handed over (more than the grace).
        kill_between: Option<(usize, Duration)>,
    },
}

/// A message the bot sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    pub chat: i64,
    pub caption: Option<String>,
    /// The message of the earlier copy and of the copy sent again.
    pub first: i64,
    pub again: i64,
    pub verdict: Verdict,
}

impl Repeat {
    pub fn at_wire(&self) -> bool {
        matches!(self.verdict, Verdict::AtWire { .. })
    }

    /// One line naming the message and why (not the chat): for reports and test failures.
    pub fn describe(&self) -> String {
        let caption: String = self
            .caption
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        let why = match self.verdict {
            Verdict::AtWire {
                kill,
                answered_before_kill: None,
            } => format!("its answer never reached the bot (kill {})", kill + 1),
            Verdict::AtWire {
                kill,
                answered_before_kill: Some(lead),
            } => format!(
                "its answer was handed over {:.2} s before kill {} (within {} s)",
                lead.as_secs_f64(),
                kill + 1,
                WIRE_GRACE.as_secs()
            ),
            Verdict::Defect {
                kill_between: Some((kill, lead)),
                ..
            } => format!(
                "its answer was handed over {:.2} s before kill {} (more than {} s: the bot had it)",
                lead.as_secs_f64(),
                kill + 1,
                WIRE_GRACE.as_secs()
            ),
            Verdict::Defect {
                answered_before_again: Some(lead),
                kill_between: None,
            } => format!(
                "its answer was handed over {:.2} s before the copy, with no kill between",
                lead.as_secs_f64()
            ),
            Verdict::Defect {
                answered_before_again: None,
                kill_between: None,
            } => "never answered, yet sent again with no kill between".to_owned(),
        };
        format!(
            "\"{caption}\" (message {}) sent again as message {}: {why}",
            self.first, self.again
        )
    }
}

/// Every message in `sends` that went out more than once, each later copy judged against the
/// copy before it. `kills` in any order; `grace` is normally [`WIRE_GRACE`].
pub fn repeats(sends: &[FileSend], kills: &[Kill], grace: Duration) -> Vec<Repeat> {
    let mut ordered: Vec<&FileSend> = sends.iter().collect();
    ordered.sort_by_key(|s| s.arrived);
    let mut found = Vec::new();
    // The latest copy of each message so far: a third copy is judged against the second.
    let mut latest: HashMap<MessageKey<'_>, &FileSend> = HashMap::new();
    for again in ordered {
        let Some(first) = latest.insert(again.key(), again) else {
            continue;
        };
        let kill = kills
            .iter()
            .enumerate()
            .filter(|(_, k)| again.arrived >= k.signalled && k.caught(first, grace))
            .min_by_key(|(_, k)| k.signalled);
        let verdict = match kill {
            Some((index, k)) => Verdict::AtWire {
                kill: index,
                answered_before_kill: first
                    .answered
                    .map(|at| k.signalled.saturating_duration_since(at)),
            },
            None => Verdict::Defect {
                answered_before_again: first
                    .answered
                    .map(|at| again.arrived.saturating_duration_since(at)),
                kill_between: kills
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| first.arrived <= k.dead && again.arrived >= k.signalled)
                    .min_by_key(|(_, k)| k.signalled)
                    .map(|(index, k)| {
                        let answered = first.answered.unwrap_or(first.arrived);
                        (index, k.signalled.saturating_duration_since(answered))
                    }),
            },
        };
        found.push(Repeat {
            chat: again.chat,
            caption: again.caption.clone(),
            first: first.message_id,
            again: again.message_id,
            verdict,
        });
    }
    found
}

/// Sends at the wire at any of the kills (each counted once): the most repeats the kills can
/// excuse.
pub fn in_flight_at(sends: &[FileSend], kills: &[Kill], grace: Duration) -> usize {
    sends
        .iter()
        .filter(|s| kills.iter().any(|k| k.caught(s, grace)))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(
        t0: Instant,
        message_id: i64,
        arrived_ms: u64,
        answered_ms: Option<u64>,
        caption: &str,
    ) -> FileSend {
        FileSend {
            chat: 1,
            message_id,
            document: false,
            caption: Some(caption.to_owned()),
            buttons: vec![("Again".into(), format!("again:{caption}"))],
            reply_to: None,
            arrived: t0 + Duration::from_millis(arrived_ms),
            answered: answered_ms.map(|ms| t0 + Duration::from_millis(ms)),
        }
    }

    fn kill_at(t0: Instant, ms: u64) -> Kill {
        Kill {
            signalled: t0 + Duration::from_millis(ms),
            dead: t0 + Duration::from_millis(ms + 20),
        }
    }

    #[test]
    fn answered_long_before_the_kill_is_a_defect() {
        let t0 = Instant::now();
        let sends = [
            send(t0, 1, 1_000, Some(1_010), "a"),
            send(t0, 2, 9_000, Some(9_010), "a"),
        ];
        let found = repeats(&sends, &[kill_at(t0, 5_000)], WIRE_GRACE);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].verdict,
            Verdict::Defect {
                answered_before_again: Some(Duration::from_millis(7_990)),
                kill_between: Some((0, Duration::from_millis(3_990))),
            }
        );
        assert!(
            found[0]
                .describe()
                .ends_with("handed over 3.99 s before kill 1 (more than 2 s: the bot had it)"),
            "{}",
            found[0].describe()
        );
    }

    #[test]
    fn never_answered_or_answered_just_before_the_kill_is_at_the_wire() {
        let t0 = Instant::now();
        let sends = [
            send(t0, 1, 4_900, None, "a"),
            send(t0, 2, 4_000, Some(4_500), "b"),
            send(t0, 3, 7_000, Some(7_010), "a"),
            send(t0, 4, 7_100, Some(7_110), "b"),
            // Handed over after the signal, before the process was reaped.
            send(t0, 5, 4_990, Some(5_010), "c"),
            send(t0, 6, 7_200, Some(7_210), "c"),
        ];
        let kills = [kill_at(t0, 5_000)];
        let found = repeats(&sends, &kills, WIRE_GRACE);
        let verdicts: Vec<(i64, Verdict)> = found.iter().map(|r| (r.first, r.verdict)).collect();
        assert_eq!(
            verdicts,
            [
                (
                    1,
                    Verdict::AtWire {
                        kill: 0,
                        answered_before_kill: None
                    }
                ),
                (
                    2,
                    Verdict::AtWire {
                        kill: 0,
                        answered_before_kill: Some(Duration::from_millis(500))
                    }
                ),
                (
                    5,
                    Verdict::AtWire {
                        kill: 0,
                        answered_before_kill: Some(Duration::ZERO)
                    }
                ),
            ]
        );
        assert_eq!(in_flight_at(&sends, &kills, WIRE_GRACE), 3);
    }

    #[test]
    fn without_a_kill_every_repeat_is_a_defect() {
        let t0 = Instant::now();
        let sends = [
            send(t0, 1, 1_000, None, "a"),
            send(t0, 2, 1_500, Some(1_510), "a"),
            send(t0, 3, 2_000, Some(2_010), "b"),
            send(t0, 4, 2_100, Some(2_110), "b"),
        ];
        let found = repeats(&sends, &[], WIRE_GRACE);
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|r| !r.at_wire()), "{found:?}");
        assert!(
            found[0]
                .describe()
                .ends_with("never answered, yet sent again with no kill between"),
            "{}",
            found[0].describe()
        );
    }

    #[test]
    fn a_copy_sent_before_the_kill_is_a_defect_and_distinct_messages_are_no_repeats() {
        let t0 = Instant::now();
        let sends = [
            // Both copies went out before the kill: the kill cannot explain the second.
            send(t0, 1, 4_000, Some(4_010), "a"),
            send(t0, 2, 4_500, Some(4_510), "a"),
            // Another message (its own caption and buttons), right at the kill.
            send(t0, 3, 4_990, None, "b"),
        ];
        let found = repeats(&sends, &[kill_at(t0, 5_000)], WIRE_GRACE);
        assert_eq!(found.len(), 1);
        assert!(!found[0].at_wire(), "{found:?}");
        let mut other_chat = sends[2].clone();
        other_chat.chat = 2;
        other_chat.message_id = 9;
        other_chat.arrived += Duration::from_secs(3);
        let more = [sends[2].clone(), other_chat];
        assert!(repeats(&more, &[kill_at(t0, 5_000)], WIRE_GRACE).is_empty());
    }
}
