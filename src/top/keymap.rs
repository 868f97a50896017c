//! Every key, once: [`KEYMAP`] is the table of (focus, keys, command, help text, footer label) from
//! which key dispatch ([`action_for_key`]), the `?` overlay and the footer are all made, so they
//! cannot disagree.
//!
//! A key press goes to the first row, in table order, whose focus list holds the current
//! [`Focus`] and whose keys hold the key; its [`Command`] becomes an [`Action`].

use super::action::Action;
use super::state::{Focus, State};
use ratatui::crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};

/// Declares [`Command`] and its [`Command::ALL`] from one list, so neither can miss a command.
macro_rules! commands {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// What a key asks for. Each becomes an [`Action`] ([`Command::action`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Command {
            $($(#[doc = $doc])* $name,)*
        }

        impl Command {
            /// Every command, in declaration order.
            pub const ALL: &'static [Command] = &[$(Command::$name,)*];
        }
    };
}

commands! {
    /// Leave the monitor.
    Quit,
    /// Show or hide the key help.
    ToggleHelp,
    /// Close the help or the detail view.
    CloseOverlay,
    /// Focus the next pane (event pane, progress pane).
    FocusNext,
    /// Focus the previous pane.
    FocusPrev,
    /// Select the next (newer) event.
    NextEvent,
    /// Select the previous (older) event.
    PrevEvent,
    /// One screenful of events down.
    PageDown,
    /// One screenful of events up.
    PageUp,
    /// Select the oldest matching event.
    FirstEvent,
    /// Follow the newest events again.
    Live,
    /// Pause or resume following (while scrubbing: the replay).
    TogglePause,
    /// Open the detail view of the selected event.
    OpenDetail,
    /// Select the next gauge.
    NextGauge,
    /// Select the previous gauge.
    PrevGauge,
    /// Select the first gauge.
    FirstGauge,
    /// Select the last gauge.
    LastGauge,
    /// Show only the selected gauge's events.
    DrillDown,
    /// Go back: from a gauge's events to the filter and pane before, or from the progress pane to
    /// the event pane.
    Back,
    /// Scroll the open overlay one line down.
    ScrollDown,
    /// Scroll the open overlay one line up.
    ScrollUp,
    /// Scroll the open overlay ten lines down.
    ScrollPageDown,
    /// Scroll the open overlay ten lines up.
    ScrollPageUp,
    /// Start editing the filter.
    FilterStart,
    /// Edit the filter text with the key (typing, deleting, moving the cursor).
    FilterEdit,
    /// Keep the edited filter.
    FilterCommit,
    /// Restore the filter in force before editing.
    FilterCancel,
    /// Recall an earlier filter.
    FilterRecallPrev,
    /// Recall a later filter.
    FilterRecallNext,
    /// History cursor one matching event back.
    ScrubBack,
    /// History cursor one matching event forward.
    ScrubForward,
    /// History cursor one second back.
    ScrubJumpBack,
    /// History cursor one second forward.
    ScrubJumpForward,
    /// History cursor to the oldest kept event.
    ScrubOldest,
    /// Replay from the cursor: 1x, 10x, 100x, the original pace, off.
    CycleReplay,
    /// Write the matching events to a file (asks for its name first).
    WriteMatching,
    /// Edit the file name with the key.
    PromptEdit,
    /// Write to the file named.
    PromptCommit,
    /// Close the prompt without writing.
    PromptCancel,
}

impl Command {
    /// The action for this command, pressed as `key` (which only [`Command::FilterEdit`] and
    /// [`Command::PromptEdit`] read: `None` for a key that edits nothing).
    pub fn action(self, key: &KeyEvent) -> Option<Action> {
        Some(match self {
            Command::Quit => Action::Quit,
            Command::ToggleHelp => Action::ToggleHelp,
            Command::CloseOverlay => Action::CloseOverlay,
            Command::FocusNext => Action::FocusNext,
            Command::FocusPrev => Action::FocusPrev,
            Command::NextEvent => Action::Move(1),
            Command::PrevEvent => Action::Move(-1),
            Command::PageDown => Action::PageDown,
            Command::PageUp => Action::PageUp,
            Command::FirstEvent => Action::First,
            Command::Live => Action::Live,
            Command::TogglePause => Action::TogglePause,
            Command::OpenDetail => Action::OpenDetail,
            Command::NextGauge => Action::SelectGauge(1),
            Command::PrevGauge => Action::SelectGauge(-1),
            Command::FirstGauge => Action::SelectGauge(i64::MIN),
            Command::LastGauge => Action::SelectGauge(i64::MAX),
            Command::DrillDown => Action::DrillDown,
            Command::Back => Action::Back,
            Command::ScrollDown => Action::ScrollDetail(1),
            Command::ScrollUp => Action::ScrollDetail(-1),
            Command::ScrollPageDown => Action::ScrollDetail(10),
            Command::ScrollPageUp => Action::ScrollDetail(-10),
            Command::FilterStart => Action::FilterStart,
            Command::FilterEdit => Action::FilterInput(
                tui_input::backend::crossterm::to_input_request(&TermEvent::Key(*key))?,
            ),
            Command::FilterCommit => Action::FilterCommit,
            Command::FilterCancel => Action::FilterCancel,
            Command::FilterRecallPrev => Action::FilterRecallPrev,
            Command::FilterRecallNext => Action::FilterRecallNext,
            Command::ScrubBack => Action::ScrubBack,
            Command::ScrubForward => Action::ScrubForward,
            Command::ScrubJumpBack => Action::ScrubJumpBack,
            Command::ScrubJumpForward => Action::ScrubJumpForward,
            Command::ScrubOldest => Action::ScrubOldest,
            Command::CycleReplay => Action::CycleReplay,
            Command::WriteMatching => Action::PromptStart,
            Command::PromptEdit => Action::PromptInput(
                tui_input::backend::crossterm::to_input_request(&TermEvent::Key(*key))?,
            ),
            Command::PromptCommit => Action::PromptCommit,
            Command::PromptCancel => Action::PromptCancel,
        })
    }
}

/// A key as the table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A character key (with or without Shift).
    Char(char),
    /// A character key with Ctrl.
    Ctrl(char),
    /// Enter.
    Enter,
    /// Esc.
    Esc,
    /// Tab.
    Tab,
    /// Shift-Tab.
    BackTab,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Arrow left.
    Left,
    /// Arrow right.
    Right,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Home.
    Home,
    /// End.
    End,
    /// Any other key (the filter bar's text editing).
    Other,
}

impl Key {
    /// Whether `event` is this key.
    pub fn matches(self, event: &KeyEvent) -> bool {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        let alt = event.modifiers.contains(KeyModifiers::ALT);
        match self {
            Key::Char(c) => !ctrl && !alt && event.code == KeyCode::Char(c),
            Key::Ctrl(c) => ctrl && event.code == KeyCode::Char(c),
            Key::Enter => event.code == KeyCode::Enter,
            Key::Esc => event.code == KeyCode::Esc,
            Key::Tab => event.code == KeyCode::Tab,
            Key::BackTab => event.code == KeyCode::BackTab,
            Key::Up => event.code == KeyCode::Up,
            Key::Down => event.code == KeyCode::Down,
            Key::Left => event.code == KeyCode::Left,
            Key::Right => event.code == KeyCode::Right,
            Key::PageUp => event.code == KeyCode::PageUp,
            Key::PageDown => event.code == KeyCode::PageDown,
            Key::Home => event.code == KeyCode::Home,
            Key::End => event.code == KeyCode::End,
            Key::Other => true,
        }
    }

    /// A press of this key, as a terminal reports it (none for [`Key::Other`]).
    pub fn event(self) -> Option<KeyEvent> {
        let (code, modifiers) = match self {
            Key::Char(c) if c.is_uppercase() => (KeyCode::Char(c), KeyModifiers::SHIFT),
            Key::Char(c) => (KeyCode::Char(c), KeyModifiers::NONE),
            Key::Ctrl(c) => (KeyCode::Char(c), KeyModifiers::CONTROL),
            Key::Enter => (KeyCode::Enter, KeyModifiers::NONE),
            Key::Esc => (KeyCode::Esc, KeyModifiers::NONE),
            Key::Tab => (KeyCode::Tab, KeyModifiers::NONE),
            Key::BackTab => (KeyCode::BackTab, KeyModifiers::SHIFT),
            Key::Up => (KeyCode::Up, KeyModifiers::NONE),
            Key::Down => (KeyCode::Down, KeyModifiers::NONE),
            Key::Left => (KeyCode::Left, KeyModifiers::NONE),
            Key::Right => (KeyCode::Right, KeyModifiers::NONE),
            Key::PageUp => (KeyCode::PageUp, KeyModifiers::NONE),
            Key::PageDown => (KeyCode::PageDown, KeyModifiers::NONE),
            Key::Home => (KeyCode::Home, KeyModifiers::NONE),
            Key::End => (KeyCode::End, KeyModifiers::NONE),
            Key::Other => return None,
        };
        Some(KeyEvent::new(code, modifiers))
    }

    /// How help and footer write the key: `j`, `space`, `Ctrl-C`, `Shift-Tab`, `↑`, `PgDn`.
    pub fn label(self) -> String {
        match self {
            Key::Char(' ') => "space".to_owned(),
            Key::Char(c) => c.to_string(),
            Key::Ctrl(c) => format!("Ctrl-{}", c.to_ascii_uppercase()),
            Key::Enter => "Enter".to_owned(),
            Key::Esc => "Esc".to_owned(),
            Key::Tab => "Tab".to_owned(),
            Key::BackTab => "Shift-Tab".to_owned(),
            Key::Up => "↑".to_owned(),
            Key::Down => "↓".to_owned(),
            Key::Left => "←".to_owned(),
            Key::Right => "→".to_owned(),
            Key::PageUp => "PgUp".to_owned(),
            Key::PageDown => "PgDn".to_owned(),
            Key::Home => "Home".to_owned(),
            Key::End => "End".to_owned(),
            Key::Other => "other keys".to_owned(),
        }
    }
}

/// One row of the key table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// Where the keys act.
    pub focus: &'static [Focus],
    /// The keys and what each asks for (a row may pair opposites: `j` down, `k` up).
    pub keys: &'static [(Key, Command)],
    /// The help line.
    pub help: &'static str,
    /// The footer's word for the row, if the footer shows it there, and how many of its keys it
    /// names (joined by `/`: `←/→ scrub`).
    pub footer: Option<(&'static str, usize)>,
}

impl Binding {
    /// The row's keys as help writes them: `j k ↓ ↑`.
    pub fn keys_label(&self) -> String {
        let labels: Vec<String> = self.keys.iter().map(|(key, _)| key.label()).collect();
        labels.join(" ")
    }

    /// The row as the footer writes it (`←/→ scrub`), if the footer shows it.
    pub fn footer_label(&self) -> Option<String> {
        let (word, shown) = self.footer?;
        let keys: Vec<String> = self
            .keys
            .iter()
            .take(shown.max(1))
            .map(|(key, _)| key.label())
            .collect();
        Some(format!("{} {word}", keys.join("/")))
    }

    /// The keys the footer names.
    pub fn footer_keys(&self) -> &'static [(Key, Command)] {
        let shown = self.footer.map_or(0, |(_, n)| n.max(1));
        &self.keys[..shown.min(self.keys.len())]
    }
}

const ANYWHERE: &[Focus] = &[
    Focus::Events,
    Focus::Progress,
    Focus::Filter,
    Focus::Prompt,
    Focus::Help,
    Focus::Detail,
];
const PANES: &[Focus] = &[Focus::Events, Focus::Progress];
const EVENTS: &[Focus] = &[Focus::Events];
const PROGRESS: &[Focus] = &[Focus::Progress];
const FILTER: &[Focus] = &[Focus::Filter];
const PROMPT: &[Focus] = &[Focus::Prompt];
const DETAIL: &[Focus] = &[Focus::Detail];
const HELP: &[Focus] = &[Focus::Help];

/// Every key: dispatch, help and footer are made from this table.
pub static KEYMAP: &[Binding] = &[
    Binding {
        focus: ANYWHERE,
        keys: &[(Key::Ctrl('c'), Command::Quit)],
        help: "quit",
        footer: None,
    },
    // The event and progress panes.
    Binding {
        focus: PANES,
        keys: &[(Key::Char('q'), Command::Quit)],
        help: "quit",
        footer: Some(("quit", 1)),
    },
    Binding {
        focus: PANES,
        keys: &[(Key::Char('/'), Command::FilterStart)],
        help: "edit the filter",
        footer: Some(("filter", 1)),
    },
    Binding {
        focus: PANES,
        keys: &[
            (Key::Tab, Command::FocusNext),
            (Key::BackTab, Command::FocusPrev),
        ],
        help: "next / previous pane (events, progress)",
        footer: Some(("pane", 1)),
    },
    Binding {
        focus: PANES,
        keys: &[
            (Key::Char(' '), Command::TogglePause),
            (Key::Char('p'), Command::TogglePause),
        ],
        help: "pause / resume; scrubbing: replay",
        footer: Some(("pause", 1)),
    },
    Binding {
        focus: PANES,
        keys: &[
            (Key::Left, Command::ScrubBack),
            (Key::Right, Command::ScrubForward),
        ],
        help: "history: one event back / forward",
        footer: Some(("scrub", 2)),
    },
    Binding {
        focus: PANES,
        keys: &[
            (Key::Char('['), Command::ScrubJumpBack),
            (Key::Char(']'), Command::ScrubJumpForward),
        ],
        help: "history: one second back / forward",
        footer: None,
    },
    Binding {
        focus: PANES,
        keys: &[(Key::Home, Command::ScrubOldest)],
        help: "oldest held event; again: the stream's",
        footer: None,
    },
    Binding {
        focus: PANES,
        keys: &[(Key::Char('r'), Command::CycleReplay)],
        help: "replay: 1x 10x 100x, original pace, off",
        footer: Some(("replay", 1)),
    },
    Binding {
        focus: PANES,
        keys: &[(Key::Char('w'), Command::WriteMatching)],
        help: "write the matching events to a file",
        footer: Some(("write", 1)),
    },
    Binding {
        focus: PANES,
        keys: &[(Key::Char('L'), Command::Live), (Key::End, Command::Live)],
        help: "back to LIVE",
        footer: Some(("live", 1)),
    },
    Binding {
        focus: PANES,
        keys: &[(Key::Char('?'), Command::ToggleHelp)],
        help: "show / hide this help",
        footer: Some(("help", 1)),
    },
    // The event pane.
    Binding {
        focus: EVENTS,
        keys: &[
            (Key::Char('j'), Command::NextEvent),
            (Key::Char('k'), Command::PrevEvent),
            (Key::Down, Command::NextEvent),
            (Key::Up, Command::PrevEvent),
        ],
        help: "next / previous event (pauses)",
        footer: None,
    },
    Binding {
        focus: EVENTS,
        keys: &[
            (Key::PageDown, Command::PageDown),
            (Key::PageUp, Command::PageUp),
        ],
        help: "one screenful down / up",
        footer: None,
    },
    Binding {
        focus: EVENTS,
        keys: &[
            (Key::Char('g'), Command::FirstEvent),
            (Key::Char('G'), Command::Live),
        ],
        help: "oldest event / newest event, following",
        footer: None,
    },
    Binding {
        focus: EVENTS,
        keys: &[(Key::Enter, Command::OpenDetail)],
        help: "detail of the selected event (JSON)",
        footer: Some(("detail", 1)),
    },
    Binding {
        focus: EVENTS,
        keys: &[(Key::Esc, Command::Back)],
        help: "back from a gauge's events",
        footer: None,
    },
    // The progress pane.
    Binding {
        focus: PROGRESS,
        keys: &[
            (Key::Char('j'), Command::NextGauge),
            (Key::Char('k'), Command::PrevGauge),
            (Key::Down, Command::NextGauge),
            (Key::Up, Command::PrevGauge),
        ],
        help: "next / previous gauge",
        footer: Some(("select", 2)),
    },
    Binding {
        focus: PROGRESS,
        keys: &[
            (Key::Char('g'), Command::FirstGauge),
            (Key::Char('G'), Command::LastGauge),
        ],
        help: "first / last gauge",
        footer: None,
    },
    Binding {
        focus: PROGRESS,
        keys: &[(Key::Enter, Command::DrillDown)],
        help: "only its events (sets the filter)",
        footer: Some(("its events", 1)),
    },
    Binding {
        focus: PROGRESS,
        keys: &[(Key::Esc, Command::Back)],
        help: "back to the event pane",
        footer: Some(("back", 1)),
    },
    // The filter bar.
    Binding {
        focus: FILTER,
        keys: &[(Key::Enter, Command::FilterCommit)],
        help: "keep the filter",
        footer: Some(("keep", 1)),
    },
    Binding {
        focus: FILTER,
        keys: &[(Key::Esc, Command::FilterCancel)],
        help: "restore the filter in force before",
        footer: Some(("restore", 1)),
    },
    Binding {
        focus: FILTER,
        keys: &[
            (Key::Up, Command::FilterRecallPrev),
            (Key::Down, Command::FilterRecallNext),
        ],
        help: "recall earlier / later filters",
        footer: Some(("recall", 2)),
    },
    Binding {
        focus: FILTER,
        keys: &[(Key::Other, Command::FilterEdit)],
        help: "type; ← → Home End Ctrl-W Ctrl-U edit",
        footer: None,
    },
    // The file name prompt (w).
    Binding {
        focus: PROMPT,
        keys: &[(Key::Enter, Command::PromptCommit)],
        help: "write the matching events there",
        footer: Some(("write", 1)),
    },
    Binding {
        focus: PROMPT,
        keys: &[(Key::Esc, Command::PromptCancel)],
        help: "close without writing",
        footer: Some(("cancel", 1)),
    },
    Binding {
        focus: PROMPT,
        keys: &[(Key::Other, Command::PromptEdit)],
        help: "type the file name",
        footer: None,
    },
    // The detail view.
    Binding {
        focus: DETAIL,
        keys: &[
            (Key::Esc, Command::CloseOverlay),
            (Key::Char('q'), Command::CloseOverlay),
            (Key::Enter, Command::CloseOverlay),
        ],
        help: "close the detail view",
        footer: Some(("close", 1)),
    },
    Binding {
        focus: DETAIL,
        keys: &[
            (Key::Char('j'), Command::ScrollDown),
            (Key::Char('k'), Command::ScrollUp),
            (Key::Down, Command::ScrollDown),
            (Key::Up, Command::ScrollUp),
        ],
        help: "scroll one line",
        footer: Some(("scroll", 2)),
    },
    Binding {
        focus: DETAIL,
        keys: &[
            (Key::PageDown, Command::ScrollPageDown),
            (Key::PageUp, Command::ScrollPageUp),
        ],
        help: "scroll ten lines",
        footer: None,
    },
    Binding {
        focus: DETAIL,
        keys: &[(Key::Char('?'), Command::ToggleHelp)],
        help: "this help",
        footer: Some(("help", 1)),
    },
    // The help.
    Binding {
        focus: HELP,
        keys: &[
            (Key::Esc, Command::CloseOverlay),
            (Key::Char('?'), Command::CloseOverlay),
            (Key::Char('q'), Command::CloseOverlay),
            (Key::Enter, Command::CloseOverlay),
        ],
        help: "close this help",
        footer: Some(("close", 1)),
    },
    Binding {
        focus: HELP,
        keys: &[
            (Key::Char('j'), Command::ScrollDown),
            (Key::Char('k'), Command::ScrollUp),
            (Key::Down, Command::ScrollDown),
            (Key::Up, Command::ScrollUp),
        ],
        help: "scroll, when it does not fit",
        footer: Some(("scroll", 2)),
    },
];

/// The heading help puts over rows acting in `focus`.
pub fn section(focus: &[Focus]) -> &'static str {
    match focus {
        [Focus::Events, Focus::Progress] => "event and progress panes",
        [Focus::Events] => "event pane",
        [Focus::Progress] => "progress pane (Tab)",
        [Focus::Filter] => "filter bar (/)",
        [Focus::Prompt] => "file name prompt (w)",
        [Focus::Detail] => "detail view (Enter)",
        [Focus::Help] => "this help",
        _ => "anywhere",
    }
}

/// The rows the footer shows in `focus`: those only for `focus` first, then the shared ones, in
/// table order.
pub fn footer(focus: Focus) -> Vec<&'static Binding> {
    let shown = |b: &&Binding| b.footer.is_some() && b.focus.contains(&focus);
    let own = KEYMAP.iter().filter(shown).filter(|b| b.focus.len() == 1);
    let shared = KEYMAP.iter().filter(shown).filter(|b| b.focus.len() > 1);
    own.chain(shared).collect()
}

/// The command `key` asks for in `focus`: the first row for `focus` with the key.
pub fn command_for(focus: Focus, key: &KeyEvent) -> Option<Command> {
    KEYMAP
        .iter()
        .filter(|b| b.focus.contains(&focus))
        .flat_map(|b| b.keys.iter())
        .find(|(k, _)| k.matches(key))
        .map(|&(_, command)| command)
}

/// The action for a terminal event, given what has the focus; `None` for anything ignored (key
/// releases and repeats included, mouse and focus events).
pub fn action_for_terminal_event(state: &State, event: &TermEvent) -> Option<Action> {
    match event {
        TermEvent::Key(key) => action_for_key(state, key),
        TermEvent::Resize(width, height) => Some(Action::Resize {
            width: *width,
            height: *height,
        }),
        _ => None,
    }
}

/// The action for a key press, given what has the focus ([`KEYMAP`]); `None` for keys that do
/// nothing there and for releases and repeats.
pub fn action_for_key(state: &State, key: &KeyEvent) -> Option<Action> {
    if key.kind != KeyEventKind::Press {
        return None;
    }
    command_for(state.shown().focus(), key)?.action(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice_in_one_focus() {
        for &focus in ANYWHERE {
            let mut seen: Vec<Key> = Vec::new();
            for binding in KEYMAP.iter().filter(|b| b.focus.contains(&focus)) {
                for &(key, _) in binding.keys {
                    assert!(!seen.contains(&key), "{key:?} twice in {focus:?}");
                    seen.push(key);
                }
            }
            // `Other` takes whatever is left, so it comes last.
            if let Some(at) = seen.iter().position(|k| *k == Key::Other) {
                assert_eq!(at, seen.len() - 1, "{focus:?}");
            }
        }
    }

    #[test]
    fn every_command_has_a_key_and_every_key_is_what_it_says() {
        for command in Command::ALL {
            assert!(
                KEYMAP
                    .iter()
                    .any(|b| b.keys.iter().any(|(_, c)| c == command)),
                "{command:?} has no key"
            );
        }
        for binding in KEYMAP {
            for &(key, command) in binding.keys {
                let Some(event) = key.event() else { continue };
                assert!(key.matches(&event), "{key:?}");
                for &focus in binding.focus {
                    assert_eq!(
                        command_for(focus, &event),
                        Some(command),
                        "{key:?} in {focus:?}"
                    );
                }
            }
        }
    }
}
