//! Which queued job runs next: round-robin across users, each under the per-user limit.
//!
//! The durable queue is the `generation_jobs` table; this is its in-memory index, rebuilt from
//! the table on start. It keeps one FIFO per user and a ring of users with queued jobs, so one
//! user with 50 jobs gets one turn per round like everyone else.

use std::collections::{HashMap, VecDeque};

use genbot_store::{JobId, UserId};

#[derive(Debug, Default)]
struct UserQueue {
    queued: VecDeque<JobId>,
    running: u32,
}

#[derive(Debug)]
pub(crate) struct Scheduler {
    users: HashMap<UserId, UserQueue>,
    /// Users with at least one queued job, each once, in turn order.
    ring: VecDeque<UserId>,
    queued: usize,
    per_user_limit: u32,
}

impl Scheduler {
    pub(crate) fn new(per_user_limit: u32) -> Self {
        Scheduler {
            users: HashMap::new(),
            ring: VecDeque::new(),
            queued: 0,
            per_user_limit: per_user_limit.max(1),
        }
    }

    /// Jobs waiting, all users.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Appends a job to its user's queue.
    pub(crate) fn push(&mut self, user: UserId, job: JobId) {
        let queue = self.users.entry(user).or_default();
        if queue.queued.is_empty() {
            self.ring.push_back(user);
        }
        queue.queued.push_back(job);
        self.queued += 1;
    }

    /// Counts a job of `user` as running without it having been queued here (restart recovery).
    pub(crate) fn mark_running(&mut self, user: UserId) {
        self.users.entry(user).or_default().running += 1;
    }

    /// The next job to run: the first user in turn order below the per-user limit gives up
    /// their oldest job and moves to the back of the ring.
    pub(crate) fn next(&mut self) -> Option<(UserId, JobId)> {
        for _ in 0..self.ring.len() {
            let user = self.ring.pop_front()?;
            let Some(queue) = self.users.get_mut(&user) else {
                continue;
            };
            if queue.running >= self.per_user_limit {
                self.ring.push_back(user);
                continue;
            }
            let Some(job) = queue.queued.pop_front() else {
                continue;
            };
            queue.running += 1;
            self.queued -= 1;
            if !queue.queued.is_empty() {
                self.ring.push_back(user);
            }
            return Some((user, job));
        }
        None
    }

    /// A job of `user` stopped running (finished, or was not claimable after all).
    pub(crate) fn finished(&mut self, user: UserId) {
        if let Some(queue) = self.users.get_mut(&user) {
            queue.running = queue.running.saturating_sub(1);
            if queue.running == 0 && queue.queued.is_empty() {
                self.users.remove(&user);
            }
        }
    }

    /// Takes a queued job out (cancellation); false if it is not queued here.
    pub(crate) fn remove(&mut self, user: UserId, job: JobId) -> bool {
        let Some(queue) = self.users.get_mut(&user) else {
            return false;
        };
        let Some(index) = queue.queued.iter().position(|j| *j == job) else {
            return false;
        };
        queue.queued.remove(index);
        self.queued -= 1;
        if queue.queued.is_empty() {
            self.ring.retain(|u| *u != user);
            if queue.running == 0 {
                self.users.remove(&user);
            }
        }
        true
    }

    /// The user's most recently queued job.
    pub(crate) fn latest_of(&self, user: UserId) -> Option<JobId> {
        self.users.get(&user)?.queued.back().copied()
    }

    /// Jobs of `user` running now.
    pub(crate) fn running_of(&self, user: UserId) -> u32 {
        self.users.get(&user).map_or(0, |q| q.running)
    }

    /// Every queued job's 1-based place in the round-robin order, in one pass over the queue
    /// (asking [`Scheduler::position`] for each job would cost queue × users).
    pub(crate) fn positions(&self) -> HashMap<JobId, usize> {
        let mut positions = HashMap::with_capacity(self.queued);
        let mut active: Vec<&VecDeque<JobId>> = self
            .ring
            .iter()
            .filter_map(|u| self.users.get(u).map(|q| &q.queued))
            .collect();
        let mut round = 0;
        while !active.is_empty() {
            for queue in &active {
                if let Some(job) = queue.get(round) {
                    positions.insert(*job, positions.len() + 1);
                }
            }
            round += 1;
            active.retain(|queue| queue.len() > round);
        }
        positions
    }

    /// 1-based place of a queued job in the round-robin order (ignoring per-user limits, which
    /// can only delay others' jobs, not this one's turn).
    pub(crate) fn position(&self, user: UserId, job: JobId) -> Option<usize> {
        let own = &self.users.get(&user)?.queued;
        let k = own.iter().position(|j| *j == job)?;
        let turn = self.ring.iter().position(|u| *u == user)?;
        let ahead: usize = self
            .ring
            .iter()
            .enumerate()
            .filter(|(_, u)| **u != user)
            .map(|(i, u)| {
                let len = self.users.get(u).map_or(0, |q| q.queued.len());
                len.min(k + usize::from(i < turn))
            })
            .sum();
        Some(1 + k + ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Scheduler) -> Vec<(i64, i64)> {
        let mut order = Vec::new();
        while let Some((u, j)) = s.next() {
            order.push((u.0, j.0));
            s.finished(u);
        }
        order
    }

    #[test]
    fn users_take_turns() {
        let mut s = Scheduler::new(10);
        for j in 1..=3 {
            s.push(UserId(1), JobId(j));
        }
        s.push(UserId(2), JobId(10));
        s.push(UserId(3), JobId(20));
        assert_eq!(
            drain(&mut s),
            vec![(1, 1), (2, 10), (3, 20), (1, 2), (1, 3)]
        );
        assert_eq!(s.queued(), 0);
    }

    #[test]
    fn per_user_limit_holds_a_user_back_without_blocking_others() {
        let mut s = Scheduler::new(1);
        s.push(UserId(1), JobId(1));
        s.push(UserId(1), JobId(2));
        s.push(UserId(2), JobId(3));
        assert_eq!(s.next(), Some((UserId(1), JobId(1))));
        assert_eq!(s.next(), Some((UserId(2), JobId(3))));
        assert_eq!(s.next(), None, "user 1 is at their limit");
        s.finished(UserId(1));
        assert_eq!(s.next(), Some((UserId(1), JobId(2))));
    }

    #[test]
    fn positions_follow_the_round_robin() {
        let mut s = Scheduler::new(10);
        for j in 1..=20 {
            s.push(UserId(1), JobId(j));
        }
        s.push(UserId(2), JobId(100));
        assert_eq!(s.position(UserId(1), JobId(1)), Some(1));
        assert_eq!(s.position(UserId(2), JobId(100)), Some(2));
        assert_eq!(s.position(UserId(1), JobId(2)), Some(3));
        assert_eq!(s.position(UserId(1), JobId(20)), Some(21));
        let all = s.positions();
        for (job, user) in [(1, 1), (100, 2), (2, 1), (20, 1)] {
            assert_eq!(
                all.get(&JobId(job)).copied(),
                s.position(UserId(user), JobId(job)),
                "job {job}"
            );
        }
        assert_eq!(all.len(), 21);
        assert!(s.remove(UserId(2), JobId(100)));
        assert_eq!(s.position(UserId(1), JobId(20)), Some(20));
        assert!(!s.remove(UserId(2), JobId(100)));
        assert_eq!(s.latest_of(UserId(1)), Some(JobId(20)));
    }
}
