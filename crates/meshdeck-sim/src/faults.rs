//! Fault injection: make one simulated cluster unreachable, slow, fail with
//! 500s or reject its tokens, and restore it. Driven in-process by tests or over
//! the sim's plain-HTTP admin endpoint on loopback.

use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    #[default]
    Healthy,
    /// Connections are accepted and dropped at once; open watches end.
    Down,
    /// Every request waits this long first.
    Slow(Duration),
    /// Every API request answers 500 InternalError.
    ServerErrors,
    /// Every token is rejected with 401, as after expiry.
    TokensExpired,
    /// The next N writes (not dry runs) succeed, then every write answers 500: a cluster
    /// failing in the middle of an apply.
    WritesFailAfter(u32),
}

impl Fault {
    /// `down`, `slow:250ms` / `slow:2s`, `500`, `401`, `healthy`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "healthy" | "up" | "restore" => Ok(Fault::Healthy),
            "down" => Ok(Fault::Down),
            "500" | "errors" => Ok(Fault::ServerErrors),
            "401" | "expired" => Ok(Fault::TokensExpired),
            other if other.starts_with("writes-fail-after:") => {
                other["writes-fail-after:".len()..].parse().map(Fault::WritesFailAfter).map_err(|e| format!("bad count in {other:?}: {e}"))
            }
            other => {
                let Some(d) = other.strip_prefix("slow:") else {
                    return Err(format!(
                        "unknown fault {other:?}: expected down, slow:<duration>, 500, 401, writes-fail-after:<n> or healthy"
                    ));
                };
                let d = if let Some(ms) = d.strip_suffix("ms") {
                    ms.parse().map(Duration::from_millis)
                } else if let Some(s) = d.strip_suffix('s') {
                    s.parse().map(Duration::from_secs)
                } else {
                    d.parse().map(Duration::from_millis)
                };
                d.map(Fault::Slow).map_err(|e| format!("bad duration in {other:?}: {e}"))
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Fault::Healthy => "healthy".into(),
            Fault::Down => "down".into(),
            Fault::Slow(d) => format!("slow:{}ms", d.as_millis()),
            Fault::ServerErrors => "500".into(),
            Fault::TokensExpired => "401".into(),
            Fault::WritesFailAfter(n) => format!("writes-fail-after:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_their_names() {
        assert_eq!(Fault::parse("slow:250ms"), Ok(Fault::Slow(Duration::from_millis(250))));
        assert_eq!(Fault::parse("slow:2s"), Ok(Fault::Slow(Duration::from_secs(2))));
        assert_eq!(Fault::parse("down"), Ok(Fault::Down));
        assert!(Fault::parse("sideways").is_err());
        assert_eq!(Fault::parse(&Fault::Slow(Duration::from_millis(7)).describe()), Ok(Fault::Slow(Duration::from_millis(7))));
    }
}
