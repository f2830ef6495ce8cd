//! Themes: a palette plus semantic styles (`health.stale` falls back to
//! `health`, then `text`), `extends` to override a few keys, colours as palette
//! names, `#rrggbb` or ANSI names. Colours degrade to the terminal's depth;
//! `NO_COLOR` keeps only bold/italic/reverse.

use std::collections::BTreeMap;
use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

pub const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.yaml")),
    ("light", include_str!("../../themes/light.yaml")),
    ("high-contrast", include_str!("../../themes/high-contrast.yaml")),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    palette: BTreeMap<String, String>,
    #[serde(default)]
    styles: BTreeMap<String, StyleSpec>,
    #[serde(default)]
    cluster_accents: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    italic: bool,
    #[serde(default)]
    reversed: bool,
    #[serde(default)]
    underlined: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorDepth {
    None,
    Ansi16,
    Ansi256,
    TrueColor,
}

impl ColorDepth {
    /// From the environment: NO_COLOR, COLORTERM, TERM.
    pub fn detect() -> ColorDepth {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return ColorDepth::None;
        }
        let colorterm = std::env::var("COLORTERM").unwrap_or_default();
        if colorterm.contains("truecolor") || colorterm.contains("24bit") {
            return ColorDepth::TrueColor;
        }
        let term = std::env::var("TERM").unwrap_or_default();
        if term.contains("256") { ColorDepth::Ansi256 } else { ColorDepth::Ansi16 }
    }
}

#[derive(Clone, Debug)]
pub struct Theme {
    pub name: String,
    styles: BTreeMap<String, Style>,
    accents: Vec<Color>,
    /// Palette names resolved, for colours named elsewhere (a cluster's configured accent).
    palette: BTreeMap<String, Color>,
    depth: ColorDepth,
}

fn ansi(name: &str) -> Option<Color> {
    Some(match name {
        "black" => Color::Black,
        "red" => Color::Red,
        "green" => Color::Green,
        "yellow" => Color::Yellow,
        "blue" => Color::Blue,
        "magenta" => Color::Magenta,
        "cyan" => Color::Cyan,
        "gray" | "grey" => Color::Gray,
        "darkgray" => Color::DarkGray,
        "white" => Color::White,
        "reset" => Color::Reset,
        _ => return None,
    })
}

fn hex(s: &str) -> Option<Color> {
    let h = s.strip_prefix('#').filter(|h| h.len() == 6)?;
    let v = u32::from_str_radix(h, 16).ok()?;
    Some(Color::Rgb((v >> 16) as u8, (v >> 8) as u8, v as u8))
}

/// Map a true colour to what the terminal can show.
pub fn degrade(c: Color, depth: ColorDepth) -> Option<Color> {
    let Color::Rgb(r, g, b) = c else { return (depth != ColorDepth::None).then_some(c) };
    match depth {
        ColorDepth::None => None,
        ColorDepth::TrueColor => Some(c),
        ColorDepth::Ansi256 => {
            let q = |v: u8| (u16::from(v) * 5 / 255) as u8;
            Some(Color::Indexed(16 + 36 * q(r) + 6 * q(g) + q(b)))
        }
        ColorDepth::Ansi16 => {
            let bright = u16::from(r) + u16::from(g) + u16::from(b) > 384;
            let (r, g, b) = (r > 127, g > 127, b > 127);
            Some(match (r, g, b, bright) {
                (false, false, false, _) => Color::DarkGray,
                (true, false, false, _) => Color::Red,
                (false, true, false, _) => Color::Green,
                (true, true, false, _) => Color::Yellow,
                (false, false, true, _) => Color::Blue,
                (true, false, true, _) => Color::Magenta,
                (false, true, true, _) => Color::Cyan,
                (true, true, true, _) => Color::White,
            })
        }
    }
}

impl Theme {
    pub fn builtin(name: &str) -> Theme {
        Theme::load(name, None, ColorDepth::TrueColor).map(|(t, _)| t).unwrap_or_else(|_| Theme {
            name: name.into(),
            styles: BTreeMap::new(),
            accents: vec![],
            palette: BTreeMap::new(),
            depth: ColorDepth::TrueColor,
        })
    }

    pub fn load(name: &str, config_dir: Option<&Path>, depth: ColorDepth) -> Result<(Theme, Vec<String>), String> {
        let mut merged = ThemeFile::default();
        let mut warnings = Vec::new();
        collect(name, config_dir, &mut merged, 0, true)?;
        let color = |s: &str, warnings: &mut Vec<String>| -> Option<Color> {
            let resolved = merged.palette.get(s).map(String::as_str).unwrap_or(s);
            let c = hex(resolved).or_else(|| ansi(resolved));
            if c.is_none() {
                warnings.push(format!("theme {name}: unknown colour {s:?}"));
            }
            c.and_then(|c| degrade(c, depth))
        };
        let mut styles = BTreeMap::new();
        for (k, spec) in &merged.styles {
            let mut st = Style::default();
            if let Some(fg) = spec.fg.as_deref().and_then(|f| color(f, &mut warnings)) {
                st = st.fg(fg);
            }
            if let Some(bg) = spec.bg.as_deref().and_then(|b| color(b, &mut warnings)) {
                st = st.bg(bg);
            }
            for (on, m) in [
                (spec.bold, Modifier::BOLD),
                (spec.italic, Modifier::ITALIC),
                (spec.reversed, Modifier::REVERSED),
                (spec.underlined, Modifier::UNDERLINED),
            ] {
                if on {
                    st = st.add_modifier(m);
                }
            }
            styles.insert(k.clone(), st);
        }
        let accents = merged.cluster_accents.iter().filter_map(|a| color(a, &mut warnings)).collect();
        let palette = merged.palette.iter().filter_map(|(k, v)| hex(v).or_else(|| ansi(v)).map(|c| (k.clone(), c))).collect();
        Ok((Theme { name: name.into(), styles, accents, palette, depth }, warnings))
    }

    /// A semantic style; dotted names fall back to their parent, then `text`.
    pub fn style(&self, key: &str) -> Style {
        let mut k = key;
        loop {
            if let Some(s) = self.styles.get(k) {
                return *s;
            }
            match k.rsplit_once('.') {
                Some((parent, _)) => k = parent,
                None => return self.styles.get("text").copied().unwrap_or_default(),
            }
        }
    }

    /// A cluster's style: its configured accent (palette name, `#rrggbb` or ANSI name), else
    /// the theme's accent for its position in the registry.
    pub fn cluster_accent(&self, index: usize, accent: Option<&str>) -> Style {
        let configured =
            accent.and_then(|a| self.palette.get(a).copied().or_else(|| hex(a)).or_else(|| ansi(a))).and_then(|c| degrade(c, self.depth));
        match configured {
            Some(c) => Style::default().fg(c).add_modifier(Modifier::BOLD),
            None => self.cluster(index),
        }
    }

    /// The accent for the i-th registered cluster.
    pub fn cluster(&self, index: usize) -> Style {
        match self.accents.get(index % self.accents.len().max(1)) {
            Some(c) => Style::default().fg(*c).add_modifier(Modifier::BOLD),
            None => self.style("title"),
        }
    }
}

fn collect(name: &str, config_dir: Option<&Path>, into: &mut ThemeFile, depth: usize, user_first: bool) -> Result<(), String> {
    if depth > 4 {
        return Err(format!("theme {name}: `extends` goes more than 4 deep"));
    }
    let (_, parsed): (String, ThemeFile) = super::named_file::load("themes", name, BUILTIN, config_dir, user_first)?;
    if let Some(base) = &parsed.extends {
        collect(base, config_dir, into, depth + 1, base != name && user_first)?;
    }
    into.palette.extend(parsed.palette);
    into.styles.extend(parsed.styles);
    if !parsed.cluster_accents.is_empty() {
        into.cluster_accents = parsed.cluster_accents;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_themes_load_without_warnings_and_fall_back_by_scope() {
        for (name, _) in BUILTIN {
            let (t, warnings) = Theme::load(name, None, ColorDepth::TrueColor).expect("loads");
            assert!(warnings.is_empty(), "{name}: {warnings:?}");
            assert_ne!(t.style("health.stale"), Style::default());
            assert_eq!(t.style("health.nonexistent"), t.style("health"));
        }
        let dark = Theme::builtin("dark");
        assert_eq!(dark.cluster_accent(0, Some("bad")).fg, Some(Color::Rgb(0xff, 0x75, 0x7f)), "a configured accent by palette name");
        assert_eq!(dark.cluster_accent(0, Some("green")).fg, Some(Color::Green), "or by ANSI name");
        assert_eq!(dark.cluster_accent(1, None), dark.cluster(1), "else the registry position's");
        let (plain, _) = Theme::load("dark", None, ColorDepth::None).expect("loads");
        assert_eq!(plain.style("health").fg, None, "NO_COLOR drops colours");
        assert_eq!(degrade(Color::Rgb(255, 0, 0), ColorDepth::Ansi16), Some(Color::Red));
    }
}
