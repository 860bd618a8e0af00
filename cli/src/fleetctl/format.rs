//! fleetctl's table output: Go's `tabwriter` with minwidth 0, tabwidth 8,
//! padding 1 and tabs as padding (scheduler.md §10.3).

/// Render rows (header included when wanted) the way fleetctl does: every
/// cell but the last of a line is padded with tabs to the column's width
/// rounded up to a multiple of 8.
pub fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                widths[i] = widths[i].max(c.chars().count() + 1);
            }
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            out.push_str(c);
            if i + 1 < r.len() {
                let cellw = widths[i].div_ceil(8) * 8;
                let n = cellw - c.chars().count();
                for _ in 0..n.div_ceil(8) {
                    out.push('\t');
                }
            }
        }
        out.push('\n');
    }
    out
}

/// `113f16a7.../172.17.8.103`, or the full ID with `--full`.
pub fn machine_legend(id: &str, ip: &str, full: bool) -> String {
    let mut s = if full || id.len() <= 8 {
        id.to_owned()
    } else {
        format!("{}...", &id[..8])
    };
    if !ip.is_empty() {
        s.push('/');
        s.push_str(ip);
    }
    s
}

/// `-` for a missing value.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_align_to_eight() {
        let rows = vec![
            vec!["UNIT".into(), "HASH".into(), "TARGET".into()],
            vec!["hello.service".into(), "e55c0ae".into(), "-".into()],
        ];
        assert_eq!(
            tabwrite(&rows),
            "UNIT\t\tHASH\tTARGET\nhello.service\te55c0ae\t-\n"
        );
        assert_eq!(
            machine_legend(&"1".repeat(32), "10.0.0.1", false),
            "11111111.../10.0.0.1"
        );
        assert_eq!(machine_legend("abc", "", true), "abc");
    }
}
