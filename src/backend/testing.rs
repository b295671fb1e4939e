//! Test support for the backend and its users: a scripted node for what a real Redis cannot
//! be made to do on cue (close after a request, never answer), and a [`Waiter`] that records
//! the replies it is given.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::reply::Waiter;

/// A scripted node on a free loopback port: accepts one connection, reads until it has seen
/// `expect` bytes, writes `answer`, then closes (`close`) or stays open for 5 s.
pub async fn node(expect: usize, answer: &'static [u8], close: bool) -> Arc<str> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < expect {
            if socket.read_buf(&mut seen).await.unwrap_or(0) == 0 {
                return;
            }
        }
        socket.write_all(answer).await.unwrap();
        if !close {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    addr.into()
}

/// Replies delivered, with their places, in delivery order.
#[derive(Default)]
pub struct Replies(pub RefCell<Vec<(u64, Bytes)>>);

impl Replies {
    /// The first reply, once one is in (up to 2 s).
    pub async fn first(&self) -> Bytes {
        until(|| !self.0.borrow().is_empty()).await;
        self.0.borrow()[0].1.clone()
    }
}

impl Waiter for Replies {
    fn deliver(&self, place: u64, reply: Bytes, _: Option<(&Bytes, Instant)>) {
        self.0.borrow_mut().push((place, reply));
    }
}

/// Run `test` on a current-thread runtime with a `LocalSet` (connections spawn locals).
pub fn local(test: impl std::future::Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, test);
}

/// Wait (up to 2 s) until `done` holds.
pub async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not done within 2 s");
}
