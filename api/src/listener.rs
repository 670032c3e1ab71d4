//! The API's listening socket, closed at shutdown without resetting connections.
//!
//! The kernel queues connections the process has not accepted yet, and a client (the
//! gateway) sends its request as soon as its own side is connected. Dropping the socket
//! with connections queued resets them, and a gateway does not retry a request it has
//! already sent unless the method is idempotent. So once shutdown begins this listener
//! still hands over every connection already queued, and closes only when none is left:
//! later connection attempts are refused, which a gateway can always retry elsewhere.

use std::io;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

enum Socket {
    Open(TcpListener),
    /// Out of the reactor: every accept is a real non-blocking call, so that a queued
    /// connection is never missed for want of a readiness event not yet delivered.
    Draining(std::net::TcpListener),
    Closed,
}

/// A TCP listener that, once `shutdown` turns true, drains its queue and then closes.
pub struct DrainingListener {
    socket: Socket,
    shutdown: watch::Receiver<bool>,
}

impl DrainingListener {
    pub fn new(listener: TcpListener, shutdown: watch::Receiver<bool>) -> Self {
        Self { socket: Socket::Open(listener), shutdown }
    }

    /// The next connection, or `None` once the listener has closed. Cancel-safe.
    pub async fn accept(&mut self) -> Option<TcpStream> {
        loop {
            match &mut self.socket {
                Socket::Open(listener) => {
                    let accepted = tokio::select! {
                        accepted = listener.accept() => Some(accepted),
                        _ = self.shutdown.wait_for(|stop| *stop) => None,
                    };
                    match accepted {
                        Some(Ok((stream, _))) => return Some(stream),
                        Some(Err(error)) => pause_after(&error).await,
                        None => self.start_draining(),
                    }
                }
                Socket::Draining(listener) => match listener.accept() {
                    Ok((stream, _)) => match adopt(stream) {
                        Ok(stream) => return Some(stream),
                        Err(error) => tracing::warn!(%error, "dropping a connection taken over while draining"),
                    },
                    Err(error) if is_connection_error(&error) => {}
                    Err(error) => {
                        if error.kind() != io::ErrorKind::WouldBlock {
                            tracing::warn!(%error, "accept failed while draining; closing the listener");
                        }
                        self.socket = Socket::Closed;
                    }
                },
                Socket::Closed => return None,
            }
        }
    }

    fn start_draining(&mut self) {
        if let Socket::Open(listener) = std::mem::replace(&mut self.socket, Socket::Closed) {
            match listener.into_std() {
                Ok(listener) => self.socket = Socket::Draining(listener),
                Err(error) => tracing::warn!(%error, "cannot drain the listener; closing it"),
            }
        }
    }
}

/// A connection given up by its client while queued: the next one may be fine.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

/// After a failed accept: at once for a connection error, else (out of file descriptors,
/// say) a pause, so that a lasting condition does not spin.
async fn pause_after(error: &io::Error) {
    if !is_connection_error(error) {
        tracing::error!(%error, "accept failed; pausing");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A connection accepted outside the reactor, made non-blocking and registered with it.
fn adopt(stream: std::net::TcpStream) -> io::Result<TcpStream> {
    stream.set_nonblocking(true)?;
    TcpStream::from_std(stream)
}
