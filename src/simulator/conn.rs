//! A TCP listener whose connections a request handler can kill with a TCP reset.
//!
//! Fault injection needs "the connection dropped" to look like a transport error with no HTTP
//! response at all, which an axum handler cannot express. Each accepted stream is wrapped in a
//! [`KillableStream`] that shares a [`KillSwitch`] with the handler (reachable through
//! `ConnectInfo<ConnHandle>`). When the switch is thrown, the next read, write or flush sets
//! `SO_LINGER` to zero and fails, hyper drops the connection, and closing a socket with a zero
//! linger sends RST instead of FIN.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Shared between a connection and the handlers serving requests on it.
#[derive(Debug, Default)]
pub(crate) struct KillSwitch {
    killed: AtomicBool,
}

impl KillSwitch {
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// What a handler learns about its connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle {
    pub(crate) peer: SocketAddr,
    pub(crate) kill: Arc<KillSwitch>,
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

pub(crate) struct KillableListener {
    inner: TcpListener,
}

impl KillableListener {
    pub(crate) fn new(inner: TcpListener) -> Self {
        Self { inner }
    }
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    // Replies are small and latency matters more than packet count in tests.
                    let _ = stream.set_nodelay(true);
                    let kill = Arc::new(KillSwitch::default());
                    let io = KillableStream {
                        inner: stream,
                        kill: Arc::clone(&kill),
                        reset_armed: false,
                    };
                    return (io, ConnHandle { peer, kill });
                }
                Err(err) => {
                    // Same policy as axum's own TcpListener: EMFILE and friends are transient.
                    tracing::warn!(error = %err, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnHandle {
            peer: self.inner.local_addr()?,
            kill: Arc::new(KillSwitch::default()),
        })
    }
}

pub(crate) struct KillableStream {
    inner: TcpStream,
    kill: Arc<KillSwitch>,
    reset_armed: bool,
}

impl KillableStream {
    /// If the switch was thrown: arrange for a reset on close and report the connection dead.
    fn check(&mut self) -> io::Result<()> {
        if !self.kill.is_killed() {
            return Ok(());
        }
        if !self.reset_armed {
            self.reset_armed = true;
            // A zero linger makes close() send RST and discard unsent data; the deprecation is
            // about non-zero lingers blocking the thread on drop, which cannot happen here.
            #[allow(deprecated)]
            let _ = self.inner.set_linger(Some(Duration::ZERO));
        }
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection killed by simulator fault",
        ))
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
