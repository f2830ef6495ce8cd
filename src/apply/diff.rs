//! Diff against live objects: what changes (created, changed, unchanged, to be
//! pruned) and a unified diff of what the operator reads (spec and labels).

use serde_json::Value;

use super::ChangeKind;
use super::target::normalized;

pub fn classify(live: Option<&Value>, expected: Option<&Value>) -> ChangeKind {
    match (live, expected) {
        (None, None) => ChangeKind::Unchanged,
        (None, Some(_)) => ChangeKind::Create,
        (Some(_), None) => ChangeKind::Delete,
        (Some(l), Some(e)) if normalized(l) == normalized(e) => ChangeKind::Unchanged,
        _ => ChangeKind::Update,
    }
}

/// What the operator reads of an object: a Secret's data only in words (`secret::redacted`).
fn yaml_lines(v: Option<&Value>) -> Vec<String> {
    v.map(|o| crate::yaml::to_yaml(&super::secret::redacted(&normalized(o))).lines().map(String::from).collect()).unwrap_or_default()
}

pub fn object_diff(live: Option<&Value>, expected: Option<&Value>) -> String {
    let (a, b) = (yaml_lines(live), yaml_lines(expected));
    if a == b {
        return String::new();
    }
    unified(&a, &b, 3)
}

/// A unified diff (`-`/`+`/` ` lines with `@@` hunk headers) from a longest common subsequence.
pub fn unified(a: &[String], b: &[String], context: usize) -> String {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    // (tag, text, line in a, line in b)
    let mut ops: Vec<(char, &str, usize, usize)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', &a[i], i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals before additions, as unified diffs read.
            ops.push(('-', &a[i], i, j));
            i += 1;
        } else {
            ops.push(('+', &b[j], i, j));
            j += 1;
        }
    }
    let changed: Vec<usize> = ops.iter().enumerate().filter(|(_, o)| o.0 != ' ').map(|(k, _)| k).collect();
    let mut out = String::new();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(context);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * context {
            end = changed[k];
            k += 1;
        }
        let end = (end + context + 1).min(ops.len());
        let hunk = &ops[start..end];
        let a_len = hunk.iter().filter(|o| o.0 != '+').count();
        let b_len = hunk.iter().filter(|o| o.0 != '-').count();
        out.push_str(&format!("@@ -{},{a_len} +{},{b_len} @@\n", hunk[0].2 + 1, hunk[0].3 + 1));
        for (tag, text, _, _) in hunk {
            out.push_str(&format!("{tag}{text}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    #[test]
    fn unified_diff_shows_changed_lines_with_context() {
        let d = unified(&lines("a\nb\nc\nweight: 80\nd"), &lines("a\nb\nc\nweight: 75\nd"), 1);
        assert_eq!(d, "@@ -3,3 +3,3 @@\n c\n-weight: 80\n+weight: 75\n d\n");
        assert_eq!(unified(&lines("x"), &lines("x"), 3), "");
        assert_eq!(unified(&[], &lines("new"), 3), "@@ -1,0 +1,1 @@\n+new\n");
    }
}
