//! A TCP proxy for fault injection between two Dockyard processes on loopback. Its mode can
//! be changed while connections are open: pass, blackhole (both ways, or one direction
//! only), delay every chunk, stall a fraction of chunks (a lossy link: TCP retransmits what
//! is lost, so the application sees the data late), reset every connection, or corrupt
//! the next bytes that pass.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Pass,
    /// Nothing crosses in either direction; connections stay open (a silent partition).
    Blackhole,
    /// Only client → server bytes are held back.
    BlackholeUp,
    /// Only server → client bytes are held back (the client stops hearing the server).
    BlackholeDown,
    /// Every chunk waits this long; `loss` of the chunks wait `stall` on top (what a lost
    /// packet costs TCP: a retransmission timeout).
    Slow {
        delay_ms: u64,
        loss: f64,
        stall_ms: u64,
    },
    /// Flips one byte of the next chunk going client → server, then passes.
    CorruptUp,
}

/// Counters an assertion can read.
#[derive(Default, Debug, Clone)]
pub struct ProxyStats {
    pub connections: u64,
    pub resets: u64,
    pub corrupted: u64,
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    reset: watch::Sender<u64>,
    stats: Arc<Mutex<ProxyStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let (reset, reset_rx) = watch::channel(0u64);
        let stats = Arc::new(Mutex::new(ProxyStats::default()));
        let st = Arc::clone(&stats);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if let Ok(mut s) = st.lock() {
                    s.connections += 1;
                }
                let (m, r, st) = (mode_rx.clone(), reset_rx.clone(), Arc::clone(&st));
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        pipe(client, server, m, r, st).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            mode,
            reset,
            stats,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, m: Mode) {
        self.mode.send_replace(m);
    }

    /// Resets every open connection (RST); new ones are accepted as before.
    pub fn reset_all(&self) {
        self.reset.send_modify(|n| *n += 1);
    }

    pub fn stats(&self) -> ProxyStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    mode: watch::Receiver<Mode>,
    reset: watch::Receiver<u64>,
    stats: Arc<Mutex<ProxyStats>>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(copy(cr, sw, true, mode.clone(), Arc::clone(&stats)));
    let down = tokio::spawn(copy(sr, cw, false, mode, Arc::clone(&stats)));
    let (up_abort, down_abort) = (up.abort_handle(), down.abort_handle());
    let mut reset = reset;
    // Only resets asked for after this connection was accepted apply to it.
    reset.mark_unchanged();
    tokio::select! {
        _ = reset.changed() => {
            // Dropping both halves without a shutdown closes the sockets abruptly.
            up_abort.abort();
            down_abort.abort();
            if let Ok(mut s) = stats.lock() {
                s.resets += 1;
            }
        }
        _ = up => { down_abort.abort(); }
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    upstream: bool,
    mode: watch::Receiver<Mode>,
    stats: Arc<Mutex<ProxyStats>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A partition holds bytes back (TCP would keep retransmitting them) rather than
        // losing them: once it heals, the stream goes on intact, as on a real network.
        let mut mode = mode.clone();
        loop {
            let blocked = match *mode.borrow_and_update() {
                Mode::Blackhole => true,
                Mode::BlackholeUp => upstream,
                Mode::BlackholeDown => !upstream,
                _ => false,
            };
            if !blocked || mode.changed().await.is_err() {
                break;
            }
        }
        let m = *mode.borrow();
        match m {
            Mode::Pass | Mode::Blackhole | Mode::BlackholeUp | Mode::BlackholeDown => {}
            Mode::Slow { delay_ms, loss, stall_ms } => {
                let extra = if rand::rng().random_bool(loss.clamp(0.0, 1.0)) {
                    stall_ms
                } else {
                    0
                };
                tokio::time::sleep(Duration::from_millis(delay_ms + extra)).await;
            }
            Mode::CorruptUp if upstream => {
                let i = n / 2;
                buf[i] ^= 0xff;
                if let Ok(mut s) = stats.lock() {
                    s.corrupted += 1;
                }
            }
            Mode::CorruptUp => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
