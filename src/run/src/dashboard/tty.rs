//! The dashboard on the real terminal, in a thread of its own: events
//! arrive over a channel, keys set the sweep's stop and pause flags.

use super::view::render;
use super::Dashboard;
use crate::events::{Event, Sink};
use ratatui::crossterm::event::{
    self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::prelude::CrosstermBackend;
use ratatui::Terminal;
use std::io::Stdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Puts the terminal back however the dashboard ends (also on a panic).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
    }
}

/// Starts the dashboard. Returns the sink to feed it and its thread,
/// which ends (restoring the terminal) once the sink is dropped. `q`,
/// Esc and Ctrl-C raise `stop`; `p` toggles `pause`.
pub fn spawn(
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
) -> std::io::Result<(Sink, JoinHandle<()>)> {
    enable_raw_mode()?;
    let restore = Restore;
    execute!(std::io::stdout(), EnterAlternateScreen)?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    terminal.clear()?;
    // Bounded; the thread drains it five times a second, whatever happens.
    let (tx, rx) = sync_channel(64 * 1024);
    let handle = std::thread::spawn(move || {
        let _restore = restore;
        if let Err(e) = run(&mut terminal, &rx, &stop, &pause) {
            drop(_restore);
            eprintln!("the dashboard failed ({e}); the sweep goes on without it");
            // Keep draining so the sweep never blocks on us.
            while rx.recv().is_ok() {}
        }
    });
    let sink: Sink = Box::new(move |event| {
        let _ = tx.send(event);
    });
    Ok((sink, handle))
}

fn run(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    rx: &Receiver<Event>,
    stop: &AtomicBool,
    pause: &AtomicBool,
) -> std::io::Result<()> {
    let mut dash = Dashboard::default();
    loop {
        loop {
            match rx.try_recv() {
                Ok(event) => dash.apply(&event),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        }
        dash.paused = pause.load(Ordering::SeqCst);
        terminal.draw(|f| render(f, &dash))?;
        if event::poll(Duration::from_millis(200))? {
            if let TermEvent::Key(key) = event::read()? {
                if on_key(key, stop, pause) {
                    dash.apply(&Event::Log {
                        tag: "run".into(),
                        line: "stopping every program...".into(),
                    });
                }
            }
        }
    }
}

/// What a key does: q, Esc and Ctrl-C raise `stop` (returns true), p
/// toggles `pause`.
pub fn on_key(key: KeyEvent, stop: &AtomicBool, pause: &AtomicBool) -> bool {
    if key.kind != KeyEventKind::Press {
        return false;
    }
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => stop.store(true, Ordering::SeqCst),
        _ if ctrl_c => stop.store(true, Ordering::SeqCst),
        KeyCode::Char('p') => {
            pause.fetch_xor(true, Ordering::SeqCst);
            return false;
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_and_ctrl_c_stop_p_toggles_the_pause_other_keys_do_nothing() {
        let (stop, pause) = (AtomicBool::new(false), AtomicBool::new(false));
        let key = |c, m| KeyEvent::new(KeyCode::Char(c), m);
        assert!(!on_key(key('x', KeyModifiers::NONE), &stop, &pause));
        assert!(!on_key(key('c', KeyModifiers::NONE), &stop, &pause));
        assert!(!on_key(key('p', KeyModifiers::NONE), &stop, &pause));
        assert!(pause.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst));
        assert!(!on_key(key('p', KeyModifiers::NONE), &stop, &pause));
        assert!(!pause.load(Ordering::SeqCst));
        assert!(on_key(key('c', KeyModifiers::CONTROL), &stop, &pause));
        assert!(stop.swap(false, Ordering::SeqCst));
        assert!(on_key(key('q', KeyModifiers::NONE), &stop, &pause));
        assert!(stop.load(Ordering::SeqCst));
    }
}
