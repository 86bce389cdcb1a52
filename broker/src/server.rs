//! The server: starts everything (boot, the resource monitor, the metadata writer, the AMQP and
//! AMQPS accept loops, the HTTP listeners) and fans shutdown out.
//!
//! Runs in: one accept task per listener; `start` spawns them and returns a [`ServerHandle`].
//!
//! # Invariants
//! - Shutdown is one `watch` flag: every connection sees it, sends connection.close 320
//!   CONNECTION_FORCED, and ends; `ServerHandle::shutdown` waits for all of them (bounded by
//!   `SHUTDOWN_GRACE`).
use crate::broker::Broker;
use crate::config::{Config, SHUTDOWN_GRACE};
use crate::connection;
use crate::definitions;
use crate::ids::ConnectionId;
use crate::listen::{bind, tls_acceptor, Listener};
use crate::monitor::resource_monitor;
use crate::store::meta;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A running server.
pub struct ServerHandle {
    /// The bound addresses (with the real port when 0 was asked for).
    pub local_addrs: Vec<SocketAddr>,
    /// The bound AMQPS addresses.
    pub tls_addrs: Vec<SocketAddr>,
    /// The bound management HTTP addresses.
    pub management_addrs: Vec<SocketAddr>,
    /// The bound Prometheus addresses.
    pub prometheus_addrs: Vec<SocketAddr>,
    /// The bound stream protocol addresses.
    pub stream_addrs: Vec<SocketAddr>,
    /// Broker state.
    pub broker: Arc<Broker>,
    /// Set to true to shut down.
    shutdown: watch::Sender<bool>,
    /// Accept loops (each waits for its connections on shutdown).
    tasks: JoinSet<()>,
}

impl ServerHandle {
    /// Close every connection with 320 CONNECTION_FORCED and stop listening.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async { while self.tasks.join_next().await.is_some() {} }).await;
        // Everything on disk before exit: the last definitions, every pending record.
        let b = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(m) = &b.meta {
                if let Err(e) = m.write_now(|| definitions::export(&b)) {
                    tracing::error!("cannot write definitions at shutdown: {e:#}");
                }
            }
            if let Some(s) = &b.store {
                s.close();
            }
        })
        .await;
    }
}

/// Bind every configured address and start accepting.
pub async fn start(config: Config) -> anyhow::Result<ServerHandle> {
    let broker = match &config.data_dir {
        Some(dir) => {
            let (c, d) = (config.clone(), dir.clone());
            tokio::task::spawn_blocking(move || crate::boot::open_data_dir(&c, &d)).await??
        }
        None => Broker::new(config.clone()),
    };
    if let Some(path) = &config.load_definitions {
        use anyhow::Context;
        let defs = meta::read(path).with_context(|| format!("cannot load definitions {}", path.display()))?;
        for p in definitions::import(&broker, &defs) {
            tracing::warn!("definitions {}: {p}", path.display());
        }
        tracing::info!("loaded definitions from {}", path.display());
    }
    broker.start_events();
    let (tx, rx) = watch::channel(false);
    let mut listeners = Vec::new();
    let mut local_addrs = Vec::new();
    for addr in &config.listen {
        let l = bind(*addr, Listener::Amqp)?;
        local_addrs.push(l.local_addr()?);
        listeners.push(l);
    }
    let mut tls_listeners = Vec::new();
    let mut tls_addrs = Vec::new();
    let acceptor = match &config.tls {
        Some(t) => {
            let a = tls_acceptor(t)?;
            for addr in &t.listen {
                let l = bind(*addr, Listener::Amqps)?;
                tls_addrs.push(l.local_addr()?);
                tls_listeners.push(l);
            }
            Some(a)
        }
        None => None,
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(resource_monitor(broker.clone(), rx.clone()));
    if let Some(m) = &broker.meta {
        let weak = Arc::downgrade(&broker);
        tokio::spawn(m.clone().run(move || weak.upgrade().map(|b| definitions::export(&b))));
    }
    for l in listeners {
        tasks.spawn(accept_loop(l, None, broker.clone(), rx.clone()));
    }
    for l in tls_listeners {
        tasks.spawn(accept_loop(l, acceptor.clone(), broker.clone(), rx.clone()));
    }
    if let Some(endpoint) = &broker.config.otlp_endpoint {
        tasks.spawn(crate::otlp::run(broker.clone(), endpoint.clone(), rx.clone()));
    }
    tasks.spawn(crate::shovel::runner::run(crate::shovel::client::Local {
        broker: broker.clone(),
        shutdown: rx.clone(),
    }));
    let mut stream_addrs = Vec::new();
    for addr in &config.stream_listen {
        // rabbitmq-compat: a stream port already in use leaves the stream protocol off (logged)
        // instead of failing the broker: stream queues still work over AMQP 0-9-1.
        match bind(*addr, Listener::Stream) {
            Ok(l) => {
                stream_addrs.push(l.local_addr()?);
                tasks.spawn(crate::streamproto::accept_loop(l, broker.clone(), rx.clone()));
            }
            Err(e) => tracing::error!("cannot listen for the stream protocol on {addr}: {e:#}; it is off"),
        }
    }
    let (management_addrs, prometheus_addrs) =
        crate::mgmt::start(broker.clone(), &local_addrs, &tls_addrs, &mut tasks, rx.clone()).await?;
    Ok(ServerHandle {
        local_addrs,
        tls_addrs,
        management_addrs,
        prometheus_addrs,
        stream_addrs,
        broker,
        shutdown: tx,
        tasks,
    })
}

async fn accept_loop(
    l: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((sock, peer)) => {
                    let id = ConnectionId(broker.next_conn.fetch_add(1, Ordering::Relaxed));
                    match &tls {
                        None => {
                            conns.spawn(connection::serve(sock, broker.clone(), id, shutdown.clone()));
                        }
                        Some(acceptor) => {
                            let (acceptor, broker, shutdown) = (acceptor.clone(), broker.clone(), shutdown.clone());
                            let local = sock.local_addr().ok();
                            conns.spawn(async move {
                                let _ = sock.set_nodelay(true);
                                // The TLS handshake is bounded by the handshake timeout too.
                                let limit = broker.config.handshake_timeout;
                                match tokio::time::timeout(limit, acceptor.accept(sock)).await {
                                    Ok(Ok(stream)) => {
                                        let (rd, wr) = tokio::io::split(stream);
                                        let ends = connection::Endpoints { peer: Some(peer), local, tls: true, direct: false };
                                        connection::serve_stream(rd, wr, ends, broker, id, shutdown).await;
                                    }
                                    Ok(Err(e)) => tracing::warn!(%peer, "TLS handshake failed: {e}"),
                                    Err(_) => tracing::warn!(%peer, "TLS handshake timeout"),
                                }
                            });
                        }
                    }
                }
                Err(e) => {
                    // EMFILE and friends: log and keep accepting.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(l);
    while conns.join_next().await.is_some() {}
}
