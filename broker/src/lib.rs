//! Warren, an AMQP 0-9-1 message broker: the server library behind the `warren` binary.
//!
//! The library form exists so tests and tools can run a broker in-process ([`server::start`]).
//! See ARCHITECTURE.md for the task model and LOCKS.md for lock ordering.
//!
//! # Invariants
//! - Nothing a client sends can panic the broker: handlers return [`error::AmqpError`], turned into
//!   close frames in one place (`connection::Connection::fail`).
//! - The hot path (publish -> route -> enqueue -> deliver -> ack) takes no lock that is held across
//!   an await, and performs no per-message syscall: frames go to a per-connection outbound buffer that
//!   the writer task flushes in batches.
pub mod auth;
pub mod boot;
pub mod broker;
pub mod channel;
pub mod clock;
pub mod conffile;
pub mod config;
pub mod connection;
pub mod counters;
pub mod ctl;
pub mod definitions;
pub mod error;
pub mod events;
pub mod exchange;
pub mod faults;
pub mod ids;
pub mod journal;
pub mod lent;
pub mod listen;
pub mod message;
pub mod mgmt;
pub mod monitor;
pub mod node;
pub mod otlp;
pub mod outbound;
pub mod plugins;
pub mod policy;
pub mod queue;
pub mod server;
pub mod shovel;
pub mod stats;
pub mod store;
pub mod stream;
pub mod streamproto;
pub mod trace;
pub mod user_limits;
pub mod vhost;
