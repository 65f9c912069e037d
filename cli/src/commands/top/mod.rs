//! `dockyard top`: a live view of the cluster, refreshed from the coordinator.
//!
//! `fetch` gathers a snapshot from the RPCs, `model` turns snapshots into a frame (rates,
//! ETAs, rows), `view` draws it with ratatui and `text` prints it for `--once`.

mod fetch;
mod model;
mod text;
mod view;

use std::future::Future;
use std::io::{IsTerminal, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use tokio::sync::mpsc;

use crate::client::Client;
use fetch::{Fetcher, Snapshot};
use model::{History, Sample};

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Seconds between refreshes (0.2 to 3600; fractions allowed).
    // Negative numbers reach the parser, which says what is allowed, instead of clap
    // calling `-1` an unknown flag.
    #[arg(long, default_value = "2", value_parser = parse_interval, allow_negative_numbers = true)]
    pub interval: Duration,
    /// Print one frame as plain text and exit (for scripts and tests).
    #[arg(long)]
    pub once: bool,
    /// Best hits shown, across the active and recent jobs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub top: u32,
}

/// Below 0.2 s the view would spend the coordinator's time on itself, not on the cluster.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds (e.g. 2 or 0.5)"))?;
    if !(0.2..=3600.0).contains(&secs) {
        return Err(format!("{s} s is out of range; give 0.2 to 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs the view until the user quits. `connect` is called again after a failed refresh,
/// so a coordinator restart or a leader change is followed rather than fatal.
pub async fn run<F, Fut>(connect: F, endpoint: &str, args: &TopArgs) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Client>>,
{
    // Checked before connecting: no point reaching a coordinator for a view we cannot draw.
    anyhow::ensure!(
        args.once || std::io::stdout().is_terminal(),
        "`dockyard top` draws on a terminal and stdout is not one; use `dockyard top --once` for plain text"
    );
    let mut fetcher = Fetcher::new(args.top as usize);
    let client = connect().await?;
    let snap = fetcher.fetch(&client).await?;
    let mut history = History::default();
    history.push(Sample::of(&snap));
    let cx = |error: Option<String>| model::Context {
        endpoint,
        interval: args.interval,
        top: args.top as usize,
        now_ms: dockyard_common::time::now_ms(),
        error,
        once: args.once,
    };
    if args.once {
        print!("{}", text::render(&model::build(&snap, &history, &cx(None))));
        return Ok(());
    }

    // Declared in this order so the key reader stops before the terminal is restored.
    let mut screen = Screen::enter()?;
    let (tx, mut keys) = mpsc::channel(16);
    let _reader = KeyReader::start(tx.clone())?;
    let _signals = tokio::spawn(quit_on_signal(tx));

    let mut client = Some(client);
    let mut snap: Snapshot = snap;
    let mut error: Option<String> = None;
    loop {
        screen.draw(&model::build(&snap, &history, &cx(error.clone())))?;
        let next = tokio::time::Instant::now() + args.interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => break,
                k = keys.recv() => match k {
                    Some(Key::Redraw) => screen.draw(&model::build(&snap, &history, &cx(error.clone())))?,
                    Some(Key::Quit) | None => return Ok(()),
                },
            }
        }
        let refresh = async {
            let c = match client.take() {
                Some(c) => c,
                None => connect().await?,
            };
            let s = fetcher.fetch(&c).await;
            // Dropped on a failure: the next refresh connects again (and finds the leader).
            if s.is_ok() {
                client = Some(c);
            }
            s
        };
        tokio::pin!(refresh);
        let r = loop {
            tokio::select! {
                r = &mut refresh => break r,
                k = keys.recv() => match k {
                    Some(Key::Redraw) => screen.draw(&model::build(&snap, &history, &cx(error.clone())))?,
                    Some(Key::Quit) | None => return Ok(()),
                },
            }
        };
        match r {
            Ok(s) => {
                history.push(Sample::of(&s));
                snap = s;
                error = None;
            }
            Err(e) => error = Some(format!("{e:#}")),
        }
    }
}

#[derive(Debug)]
enum Key {
    Quit,
    Redraw,
}

/// SIGINT/SIGTERM from outside (raw mode turns the terminal's Ctrl-C into a key press):
/// quit through the normal path so the terminal is restored.
async fn quit_on_signal(tx: mpsc::Sender<Key>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let _ = tx.send(Key::Quit).await;
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_ok() {
        let _ = tx.send(Key::Quit).await;
    }
}

/// The terminal in raw mode on the alternate screen; put back on drop, and by a panic hook
/// before a panic message is printed (it would be lost on the alternate screen).
struct Screen {
    term: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> Result<Self> {
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        // From here on every exit path must restore: `Screen` is not built yet, so undo by hand.
        let term = execute!(std::io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(std::io::stdout())));
        let term = match term {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e).context("cannot set up the terminal");
            }
        };
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        Ok(Screen { term })
    }

    fn draw(&mut self, f: &model::Frame) -> Result<()> {
        self.term.draw(|out| view::draw(out, f)).context("cannot draw on the terminal")?;
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(std::io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
}

/// Reads key and resize events on a thread of its own (crossterm's reads block), until
/// dropped.
struct KeyReader {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeyReader {
    fn start(tx: mpsc::Sender<Key>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("top-keys".into())
            .spawn(move || {
                // Polling with a timeout, not a blocking read, so the stop flag is seen.
                while !flag.load(Ordering::Relaxed) {
                    let key = match event::poll(Duration::from_millis(100)) {
                        Ok(false) => continue,
                        Ok(true) => match event::read() {
                            Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => match k.code {
                                KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
                                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
                                _ => continue,
                            },
                            Ok(Event::Resize(..)) => Key::Redraw,
                            Ok(_) => continue,
                            Err(_) => Key::Quit,
                        },
                        // No terminal input any more: nothing could ever quit the view.
                        Err(_) => Key::Quit,
                    };
                    let quit = matches!(key, Key::Quit);
                    if tx.blocking_send(key).is_err() || quit {
                        break;
                    }
                }
            })
            .context("cannot start the key reader")?;
        Ok(KeyReader {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for KeyReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "0.1", "7200", "nan", "inf", "two", ""] {
            assert!(parse_interval(bad).is_err(), "{bad:?} accepted");
        }
    }
}
