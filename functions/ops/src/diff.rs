//! A unified diff of two texts by lines (longest common subsequence), for showing
//! what a replay's patch changes. Payloads are small: the quadratic table is fine.

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// `--- before` / `+++ after` and the changed hunks; empty when the texts are equal.
pub fn unified(before: &str, after: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    if a == b {
        return String::new();
    }
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    // The edit script: (' ' | '-' | '+', line).
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let mut out = String::from("--- before\n+++ after\n");
    let changed: Vec<usize> = ops.iter().enumerate().filter(|(_, (k, _))| *k != ' ').map(|(n, _)| n).collect();
    let mut n = 0;
    while n < changed.len() {
        let start = changed[n].saturating_sub(CONTEXT);
        let mut end = changed[n];
        while n + 1 < changed.len() && changed[n + 1] <= end + 2 * CONTEXT + 1 {
            n += 1;
            end = changed[n];
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let old_start = ops[..start].iter().filter(|(k, _)| *k != '+').count() + 1;
        let new_start = ops[..start].iter().filter(|(k, _)| *k != '-').count() + 1;
        let old_len = ops[start..end].iter().filter(|(k, _)| *k != '+').count();
        let new_len = ops[start..end].iter().filter(|(k, _)| *k != '-').count();
        out.push_str(&format!("@@ -{old_start},{old_len} +{new_start},{new_len} @@\n"));
        for (kind, line) in &ops[start..end] {
            out.push(*kind);
            out.push_str(line);
            out.push('\n');
        }
        n += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n"), "");
    }

    #[test]
    fn an_added_line_is_shown_with_its_context_and_positions() {
        let before = "{\n  \"a\": 1,\n  \"b\": 2\n}";
        let after = "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}";
        let d = unified(before, after);
        assert!(d.starts_with("--- before\n+++ after\n@@ -1,4 +1,5 @@\n"), "{d}");
        assert!(d.contains("-  \"b\": 2\n+  \"b\": 2,\n+  \"c\": 3\n"), "{d}");
    }

    #[test]
    fn distant_changes_are_separate_hunks() {
        let before: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let after = before.replace("line 2\n", "line two\n").replace("line 27\n", "line twenty-seven\n");
        let d = unified(&before, &after);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(!d.contains("line 15"), "{d}");
    }
}
