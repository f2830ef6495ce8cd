//! Keymaps: YAML files mapping keys (and two-key sequences such as "g c") to
//! action names, per view, with `extends` and `none` to unbind. Built-ins are
//! compiled in; a file of the same name in `<config dir>/keymaps/` overrides.
//! Problems are warnings naming `file:line` (or an error for `--keymap`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::action::Action;

pub const BUILTIN: &[(&str, &str)] =
    &[("default", include_str!("../../keymaps/default.yaml")), ("vim", include_str!("../../keymaps/vim.yaml"))];

pub const VIEWS: &[&str] =
    &["global", "fleet", "service", "composer", "editor", "diff", "history", "clusters", "help", "log", "problems", "routes", "canary"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn from_event(e: &KeyEvent) -> Key {
        Key { code: e.code, ctrl: e.modifiers.contains(KeyModifiers::CONTROL), alt: e.modifiers.contains(KeyModifiers::ALT) }
    }

    pub fn parse(s: &str) -> Option<Key> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = s;
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-") {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-") {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest {
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "shift-tab" | "backtab" => KeyCode::BackTab,
            "space" => KeyCode::Char(' '),
            "backspace" => KeyCode::Backspace,
            "delete" => KeyCode::Delete,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pgup" => KeyCode::PageUp,
            "pgdn" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            f if f.starts_with('f') && f.len() > 1 && f[1..].chars().all(|c| c.is_ascii_digit()) => KeyCode::F(f[1..].parse().ok()?),
            c if c.chars().count() == 1 => KeyCode::Char(c.chars().next()?),
            _ => return None,
        };
        Some(Key { code, ctrl, alt })
    }

    pub fn display(&self) -> String {
        let base = match self.code {
            KeyCode::Enter => "enter".into(),
            KeyCode::Esc => "esc".into(),
            KeyCode::Tab => "tab".into(),
            KeyCode::BackTab => "shift-tab".into(),
            KeyCode::Char(' ') => "space".into(),
            KeyCode::Backspace => "backspace".into(),
            KeyCode::Up => "up".into(),
            KeyCode::Down => "down".into(),
            KeyCode::Left => "left".into(),
            KeyCode::Right => "right".into(),
            KeyCode::PageUp => "pgup".into(),
            KeyCode::PageDown => "pgdn".into(),
            KeyCode::Home => "home".into(),
            KeyCode::End => "end".into(),
            KeyCode::F(n) => format!("f{n}"),
            KeyCode::Char(c) => c.to_string(),
            other => format!("{other:?}").to_lowercase(),
        };
        format!("{}{}{base}", if self.ctrl { "ctrl-" } else { "" }, if self.alt { "alt-" } else { "" })
    }
}

pub type Sequence = Vec<Key>;

pub fn parse_sequence(s: &str) -> Option<Sequence> {
    s.split_whitespace().map(Key::parse).collect::<Option<Vec<_>>>().filter(|v| !v.is_empty() && v.len() <= 2)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeymapFile {
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    views: BTreeMap<String, BTreeMap<String, Spanned<String>>>,
}

/// What the pressed keys mean in a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Action(Action),
    /// The keys so far start a sequence: wait for the next.
    Prefix,
    Unbound,
}

#[derive(Clone, Debug, Default)]
pub struct Keymap {
    pub name: String,
    bindings: HashMap<(String, Sequence), Action>,
}

impl Keymap {
    pub fn builtin(name: &str) -> Keymap {
        Keymap::load(name, None).map(|(k, _)| k).unwrap_or_default()
    }

    /// Load `name` from the config dir's keymaps/ or the built-ins. Err: the file itself is unusable.
    pub fn load(name: &str, config_dir: Option<&Path>) -> Result<(Keymap, Vec<String>), String> {
        let mut keymap = Keymap { name: name.into(), bindings: HashMap::new() };
        let mut warnings = Vec::new();
        keymap.load_into(name, config_dir, &mut warnings, 0, true)?;
        Ok((keymap, warnings))
    }

    fn load_into(
        &mut self,
        name: &str,
        config_dir: Option<&Path>,
        warnings: &mut Vec<String>,
        depth: usize,
        user_first: bool,
    ) -> Result<(), String> {
        if depth > 4 {
            return Err(format!("keymap {name}: `extends` goes more than 4 deep"));
        }
        let (file, parsed): (String, KeymapFile) = super::named_file::load("keymaps", name, BUILTIN, config_dir, user_first)?;
        if let Some(base) = &parsed.extends {
            // `extends: default` inside a user default.yaml means the built-in one.
            let same = base == name;
            self.load_into(base, config_dir, warnings, depth + 1, !same && user_first)?;
        }
        for (view, keys) in &parsed.views {
            if !VIEWS.contains(&view.as_str()) {
                warnings.push(format!("{file}: unknown view {view:?} (views: {})", VIEWS.join(", ")));
                continue;
            }
            for (key, action) in keys {
                let at = format!("{file}:{}", action.referenced.line());
                let Some(seq) = parse_sequence(key) else {
                    warnings.push(format!("{at}: bad key {key:?} (e.g. \"q\", \"ctrl-c\", \"enter\", \"g c\")"));
                    continue;
                };
                if action.value == "none" {
                    self.bindings.remove(&(view.clone(), seq));
                    continue;
                }
                match Action::from_name(&action.value) {
                    Some(a) => {
                        self.bindings.insert((view.clone(), seq), a);
                    }
                    None => warnings.push(format!("{at}: key {key:?}: unknown action {:?}", action.value)),
                }
            }
        }
        Ok(())
    }

    /// The view's own bindings first, then the global ones.
    pub fn resolve(&self, view: &str, keys: &[Key]) -> Resolved {
        for v in [view, "global"] {
            if let Some(a) = self.bindings.get(&(v.to_string(), keys.to_vec())) {
                return Resolved::Action(*a);
            }
        }
        let prefix = self.bindings.keys().any(|(v, seq)| (v == view || v == "global") && seq.len() > keys.len() && seq.starts_with(keys));
        if prefix { Resolved::Prefix } else { Resolved::Unbound }
    }

    /// For a view whose text input has focus: only the view's own bindings, and the
    /// global key for Back (Esc), so that leaving still works.
    pub fn resolve_focused(&self, view: &str, keys: &[Key]) -> Resolved {
        if let Some(a) = self.bindings.get(&(view.to_string(), keys.to_vec())) {
            return Resolved::Action(*a);
        }
        if self.bindings.get(&("global".to_string(), keys.to_vec())) == Some(&Action::Back) {
            return Resolved::Action(Action::Back);
        }
        let prefix = self.bindings.keys().any(|(v, seq)| v == view && seq.len() > keys.len() && seq.starts_with(keys));
        if prefix { Resolved::Prefix } else { Resolved::Unbound }
    }

    /// Bindings of a view (and global), sorted, for help and hints.
    pub fn bindings_for(&self, view: &str) -> Vec<(String, Action)> {
        let mut out: Vec<(String, Action)> = self
            .bindings
            .iter()
            .filter(|((v, _), _)| v == view)
            .map(|((_, seq), a)| (seq.iter().map(Key::display).collect::<Vec<_>>().join(" "), *a))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        out
    }

    /// The shortest key bound to `action` in `view` (else global), for hints.
    pub fn key_for(&self, view: &str, action: Action) -> Option<String> {
        [view, "global"].iter().find_map(|v| {
            self.bindings_for(v).into_iter().filter(|(_, a)| *a == action).map(|(k, _)| k).min_by_key(|k| (k.len(), k.clone()))
        })
    }
}

/// The key bindings as a Markdown table (the README's, checked by a test).
pub fn markdown(keymap: &Keymap) -> String {
    let mut out = String::from("| view | keys | action | what it does |\n|---|---|---|---|\n");
    for view in VIEWS {
        for (key, action) in keymap.bindings_for(view) {
            let danger = if action.dangerous() { " (writes; absent in --read-only)" } else { "" };
            let key = key.replace('|', "\\|");
            out.push_str(&format!("| {view} | `{key}` | {} | {}{danger} |\n", action.name(), action.describe()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_keymaps_load_without_warnings() {
        for (name, _) in BUILTIN {
            let (km, warnings) = Keymap::load(name, None).expect("loads");
            assert!(warnings.is_empty(), "{name}: {warnings:?}");
            assert_eq!(km.resolve("fleet", &[Key::parse("q").expect("key")]), Resolved::Action(Action::Quit));
        }
        let vim = Keymap::builtin("vim");
        assert_eq!(vim.resolve("fleet", &[Key::parse("j").expect("key")]), Resolved::Action(Action::Down));
        assert_eq!(vim.resolve("fleet", &[Key::parse("g").expect("key")]), Resolved::Prefix);
        assert_eq!(vim.resolve("fleet", &parse_sequence("g c").expect("seq")), Resolved::Action(Action::GotoClusters));
    }
}
