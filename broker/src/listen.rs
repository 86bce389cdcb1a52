//! Listening sockets: binding with errors that name the port and the setting that moves it, and
//! the TLS acceptor for AMQPS.
//!
//! Runs in: `server::start` and `mgmt::start`, once per listener.
//!
//! # Invariants
//! - A bind error names the address, what listens there and the flag / env / config key to change.
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The TLS acceptor for AMQPS listeners: rustls with the ring provider, the certificate chain and
/// key from PEM files, and, with a CA file, client certificates verified against it (required with
/// `fail_if_no_peer_cert`, else optional but checked when presented).
pub fn tls_acceptor(t: &crate::config::TlsConfig) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read TLS certificate {}", t.cert_file.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", t.cert_file.display());
    let key = PrivateKeyDer::from_pem_file(&t.key_file)
        .with_context(|| format!("cannot read TLS key {}", t.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match &t.ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                CertificateDer::pem_file_iter(ca).with_context(|| format!("cannot read CA file {}", ca.display()))?
            {
                roots.add(c.with_context(|| format!("bad certificate in {}", ca.display()))?)?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if t.fail_if_no_peer_cert { v } else { v.allow_unauthenticated() };
            builder.with_client_cert_verifier(v.build()?)
        }
        None => {
            anyhow::ensure!(!t.fail_if_no_peer_cert, "fail_if_no_peer_cert needs a CA file to verify against");
            builder.with_no_client_auth()
        }
    };
    let cfg = builder.with_single_cert(certs, key).context("TLS certificate and key do not match")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// The listeners, for error messages that say which port failed and what moves it.
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    Amqp,
    Amqps,
    Management,
    Prometheus,
    Stream,
}

impl Listener {
    /// What listens there, and the flag / environment variable / rabbitmq.conf key that moves it.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Listener::Amqp => ("AMQP", "--port / WARREN_PORT / listeners.tcp.default"),
            Listener::Amqps => ("AMQPS", "--tls-port / WARREN_TLS_PORT / listeners.ssl.default"),
            Listener::Management => {
                ("the management API", "--management-port / WARREN_MANAGEMENT_PORT / management.tcp.port")
            }
            Listener::Prometheus => ("Prometheus", "--prometheus-port / WARREN_PROMETHEUS_PORT / prometheus.tcp.port"),
            Listener::Stream => {
                ("stream protocol", "--stream-port / WARREN_STREAM_PORT / stream.listeners.tcp.default")
            }
        }
    }
}

/// [`bind_listener`] with an error that names the port, what listens there, and how to move it
/// (a RabbitMQ still running on the same machine holds all of them).
pub fn bind(addr: SocketAddr, what: Listener) -> anyhow::Result<TcpListener> {
    bind_listener(addr).map_err(|e| {
        let (name, moved_by) = what.describe();
        anyhow::anyhow!(
            "cannot listen for {name} on {addr}: {e} (is another broker running? {moved_by} chooses another port)"
        )
    })
}

/// Bind a listening socket (IPv6 sockets IPv6-only, so `[::]` and `0.0.0.0` can share a port).
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // IPv6 only, so that `[::]` and `0.0.0.0` can both listen on the same port.
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    sock.set_nonblocking(true)?;
    TcpListener::from_std(sock.into())
}
