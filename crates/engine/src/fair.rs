//! The fair order of the queue: round-robin across users, so one user with 50 jobs gets one
//! turn per round like everyone else.
//!
//! The queue itself is the `generation_jobs` table, shared by every replica; the store claims
//! in this order (users by their last turn, never-served first, then each user's oldest job).
//! This module computes the same order from a snapshot of the queue, for the position messages.

use std::collections::{HashMap, VecDeque};

use genbot_store::{JobId, QueuedJob, UserId};

/// Every queued job's 1-based place in the round-robin order, in one pass over the snapshot
/// (`queued` oldest first, as [`genbot_store::Store::queued_jobs`] returns it).
pub(crate) fn positions(queued: &[QueuedJob]) -> HashMap<JobId, usize> {
    let mut per_user: HashMap<UserId, (i64, VecDeque<JobId>)> = HashMap::new();
    let mut users: Vec<(i64, UserId)> = Vec::new();
    for job in queued {
        let entry = per_user.entry(job.user).or_insert_with(|| {
            users.push((job.turn, job.user));
            (job.turn, VecDeque::new())
        });
        entry.1.push_back(job.id);
    }
    // The store serves the user with the lowest turn first, ties by user id.
    users.sort_unstable();
    let mut rings: Vec<VecDeque<JobId>> = users
        .into_iter()
        .filter_map(|(_, user)| per_user.remove(&user).map(|(_, jobs)| jobs))
        .collect();
    let mut positions = HashMap::with_capacity(queued.len());
    while !rings.is_empty() {
        for jobs in &mut rings {
            if let Some(job) = jobs.pop_front() {
                positions.insert(job, positions.len() + 1);
            }
        }
        rings.retain(|jobs| !jobs.is_empty());
    }
    positions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: i64, user: i64, turn: i64) -> QueuedJob {
        QueuedJob {
            id: JobId(id),
            user: UserId(user),
            turn,
        }
    }

    #[test]
    fn users_take_turns_and_the_least_recently_served_goes_first() {
        let mut queue: Vec<QueuedJob> = (1..=20).map(|j| q(j, 1, 5)).collect();
        queue.push(q(100, 2, 0));
        queue.push(q(101, 3, 7));
        let p = positions(&queue);
        assert_eq!(p[&JobId(100)], 1, "never served goes first");
        assert_eq!(p[&JobId(1)], 2);
        assert_eq!(p[&JobId(101)], 3);
        assert_eq!(p[&JobId(2)], 4);
        assert_eq!(p[&JobId(20)], 22);
        assert_eq!(p.len(), 22);
    }
}
