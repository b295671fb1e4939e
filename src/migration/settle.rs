//! The workers' acknowledgement of a migration phase change: once the slots concerned are
//! held, each worker settles what it sent by older tables (`Router::settle`) and says so; the
//! change goes on only when every worker has.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// One round of acknowledgements at a time: a ticket number every worker echoes.
#[derive(Debug)]
pub struct Settle {
    ticket: watch::Sender<u64>,
    /// Per worker: the last ticket it settled.
    acks: Box<[AtomicU64]>,
    acked: Notify,
}

impl Settle {
    /// A barrier for `workers` workers.
    pub fn new(workers: usize) -> Settle {
        Settle {
            ticket: watch::Sender::new(0),
            acks: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            acked: Notify::new(),
        }
    }

    /// What a worker waits on for the next round.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.ticket.subscribe()
    }

    /// Worker `index` has settled round `ticket`.
    pub fn ack(&self, index: usize, ticket: u64) {
        if let Some(ack) = self.acks.get(index) {
            ack.fetch_max(ticket, Ordering::AcqRel);
        }
        self.acked.notify_waiters();
    }

    /// Start a round and wait until every worker has settled it, or `within` has passed:
    /// then the workers that have not are named in the error.
    pub async fn round(&self, within: Duration) -> Result<(), String> {
        let mut ticket = 0;
        self.ticket.send_modify(|t| {
            *t += 1;
            ticket = *t;
        });
        let laggards = || -> Vec<usize> {
            (0..self.acks.len())
                .filter(|&i| self.acks[i].load(Ordering::Acquire) < ticket)
                .collect()
        };
        let all = async {
            loop {
                let notified = self.acked.notified();
                if laggards().is_empty() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(within, all).await.map_err(|_| {
            format!(
                "workers {:?} did not settle within {} ms (a request to a moving slot still in flight)",
                laggards(),
                within.as_millis()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_round_ends_when_every_worker_acks_it() {
        let settle = Arc::new(Settle::new(2));
        for index in 0..2 {
            let settle = Arc::clone(&settle);
            let mut rx = settle.subscribe();
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let ticket = *rx.borrow_and_update();
                    settle.ack(index, ticket);
                }
            });
        }
        settle.round(Duration::from_secs(5)).await.unwrap();
        settle.round(Duration::from_secs(5)).await.unwrap();
        let lonely = Settle::new(1);
        let error = lonely.round(Duration::from_millis(20)).await.unwrap_err();
        assert!(error.contains("workers [0]"), "{error}");
    }
}
