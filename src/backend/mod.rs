//! The backend side: pipelined connections to Redis nodes, a worker's pool of them, and
//! one-shot control connections.

pub mod conn;
pub mod connect;
pub mod credentials;
pub mod dedicated;
mod error;
pub mod oneshot;
pub mod redirect;
pub mod reply;
pub mod resolve;
pub mod script_kill;
#[cfg(test)]
pub(crate) mod testing;

pub use conn::{BackendConn, ConnSettings};
pub use credentials::Credentials;
pub use error::BackendError;
pub use reply::ReplyTarget;
