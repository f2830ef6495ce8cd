//! Keymap and theme files: the shipped ones load clean; each broken file gives
//! its own clear message naming the file and line; the README's key table is current.

use std::path::Path;

use meshdeck::tui::keymap::{Key, Keymap, Resolved, markdown};

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-keymaps")
}

#[test]
fn every_shipped_keymap_and_theme_loads_without_warnings() {
    for dir in ["keymaps", "themes"] {
        for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).expect("dir") {
            let path = entry.expect("entry").path();
            let name = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
            let warnings = if dir == "keymaps" {
                Keymap::load(&name, None).expect("loads").1
            } else {
                meshdeck::tui::theme::Theme::load(&name, None, meshdeck::tui::theme::ColorDepth::TrueColor).expect("loads").1
            };
            assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
        }
    }
}

#[test]
fn broken_keymaps_name_file_line_and_problem() {
    let dir = fixtures();
    let file = |n: &str| dir.join("keymaps").join(format!("{n}.yaml")).display().to_string();
    let (_, w) = Keymap::load("unknown-action", Some(&dir)).expect("usable with warnings");
    assert_eq!(w, [format!("{}:5: key \"x\": unknown action \"explode\"", file("unknown-action"))]);
    let (_, w) = Keymap::load("bad-key", Some(&dir)).expect("usable with warnings");
    assert_eq!(w, [format!("{}:5: bad key \"ctrl-\" (e.g. \"q\", \"ctrl-c\", \"enter\", \"g c\")", file("bad-key"))]);
    let (_, w) = Keymap::load("unknown-view", Some(&dir)).expect("usable with warnings");
    assert!(w[0].starts_with(&file("unknown-view")) && w[0].contains("unknown view \"fleeet\""), "{w:?}");
    let err = Keymap::load("bad-yaml", Some(&dir)).expect_err("unusable");
    assert!(err.starts_with(&format!("{}:5:", file("bad-yaml"))), "{err}");
    let err = Keymap::load("nonexistent", Some(&dir)).expect_err("unknown");
    assert!(err.contains("no keymap named \"nonexistent\""), "{err}");
}

#[test]
fn a_user_keymap_extends_and_unbinds() {
    let (km, w) = Keymap::load("unbind", Some(&fixtures())).expect("loads");
    assert!(w.is_empty(), "{w:?}");
    let key = |s: &str| Key::parse(s).expect("key");
    assert_eq!(km.resolve("fleet", &[key("l")]), Resolved::Action(meshdeck::tui::action::Action::OpenService));
    assert_eq!(km.resolve("fleet", &[key("enter")]), Resolved::Unbound, "`none` unbinds");
    assert_eq!(km.resolve("fleet", &[key("j")]), Resolved::Action(meshdeck::tui::action::Action::Down), "vim's keys are inherited");
}

#[test]
fn a_bad_keymap_on_the_command_line_is_exit_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshdeck"))
        .args(["--keymap", "unknown-action", "demo"])
        .env("MESHDECK_CONFIG_DIR", fixtures())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown action \"explode\""), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_readme_key_table_is_generated_from_the_default_keymap() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README");
    let start = readme.find("<!-- keymap:start -->").expect("start marker") + "<!-- keymap:start -->\n".len();
    let end = readme.find("<!-- keymap:end -->").expect("end marker");
    let expected = markdown(&Keymap::builtin("default"));
    assert!(readme[start..end] == expected, "README's key table is stale; replace it with:\n{expected}");
}
